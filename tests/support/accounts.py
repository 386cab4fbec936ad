"""Accounts, numbers and users as the operator provisions them, for tests that
need a caller or a key of their own."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

import phonenumbers

from orchestrator import provision, redis_client


@dataclass(frozen=True)
class Account:
    id: str
    number: str
    key: str
    user_id: str
    user_email: str


def random_number(avoid_outcomes: bool = True) -> str:
    """A valid, unused-looking US number; never one of the emulator's special endings
    (docs/emulator.md) unless `avoid_outcomes` is False."""
    while True:
        candidate = f"+1415{random.randint(2000000, 9999999)}"
        if avoid_outcomes and candidate[-4:] in {"0001", "0002", "0003", "0004"}:
            continue
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


def new_account(redis_url: str, name: str = "Test Co") -> Account:
    """A fresh account with a number, a user and a User key: tests that share one
    Redis never see each other's sessions."""
    r = redis_client.connect_sync(redis_url)
    aid = provision.create_account(r, name)
    number = provision.add_number(r, random_number(), aid)
    email = f"agent-{secrets.token_hex(3)}@example.com"
    uid = provision.add_user(r, email, aid, name="Ada Agent", avatar="https://example.com/ada.png")
    return Account(aid, number, provision.create_key(r, aid, ["User"]), uid, email)


@dataclass(frozen=True)
class Team:
    """An account whose agents are Ada Agent and Bob Builder (as the session log names
    them): a key of no user, and a key that acts as each agent."""

    id: str
    number: str
    key: str  # no user
    ada: str
    ada_email: str
    ada_key: str  # acts as Ada Agent
    bob: str
    bob_email: str
    bob_key: str  # acts as Bob Builder


def new_team(redis_url: str, name: str = "Team Co") -> Team:
    """A fresh account with two agents and their keys."""
    r = redis_client.connect_sync(redis_url)
    aid = provision.create_account(r, name)
    number = provision.add_number(r, random_number(), aid)
    tag = secrets.token_hex(3)
    ada_email, bob_email = f"ada-{tag}@example.com", f"bob-{tag}@example.com"
    ada = provision.add_user(r, ada_email, aid, name="Ada Agent")
    bob = provision.add_user(r, bob_email, aid, name="Bob Builder")
    return Team(
        aid,
        number,
        provision.create_key(r, aid, ["User"]),
        ada,
        ada_email,
        provision.create_key(r, aid, ["User"], user=ada),
        bob,
        bob_email,
        provision.create_key(r, aid, ["User"], user=bob),
    )
