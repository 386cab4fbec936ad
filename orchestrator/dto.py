"""The wire DTOs of the seed page, declared once.

Rendering, validation messages and (later) API metadata all read these
declarations, so a field added here appears everywhere at once. Enum values
travel by name, keys in camelCase, as ServiceStack writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any


class SessionDialState(Enum):
    None_ = "None"
    Active = "Active"


class SessionCallState(Enum):
    Disconnected = "Disconnected"
    Ringing = "Ringing"
    Connected = "Connected"
    Hold = "Hold"
    Passive = "Passive"


class SessionQueueStates(Enum):
    None_ = "None"
    Queued = "Queued"
    Ringing = "Ringing"
    Connected = "Connected"
    Hold = "Hold"
    Disconnected = "Disconnected"


class FlowChannels(Enum):
    Voice = "Voice"
    Chat = "Chat"
    Fax = "Fax"


class SessionHoldReasons(Enum):
    None_ = "None"
    Transferring = "Transferring"


class SessionMemberCallState(Enum):
    None_ = "None"
    Ringing = "Ringing"
    Connected = "Connected"
    Hold = "Hold"


class SessionMemberRoles(Enum):
    None_ = "None"
    Caller = "Caller"
    Agent = "Agent"
    Transfer = "Transfer"


class SessionDirections(Enum):
    Incoming = "Incoming"
    Outgoing = "Outgoing"


class SortOrders(Enum):
    Ascend = "Ascend"
    Descend = "Descend"


class DeviceTypes(Enum):
    Web = "Web"
    iOS = "iOS"
    Android = "Android"


class AgentStates(Enum):
    Unknown = "Unknown"
    Ready = "Ready"
    NotReady = "NotReady"
    LoggedOut = "LoggedOut"
    WrapUp = "WrapUp"
    Outgoing = "Outgoing"
    Other = "Other"


class AgentStateReasons(Enum):
    Unknown = "Unknown"
    SetByUser = "SetByUser"
    MissedCall = "MissedCall"
    SetBySystem = "SetBySystem"


@dataclass(frozen=True)
class Field:
    """One DTO property: wire name, type and the value a fresh object has.

    `type` is "string", "bool", "bool?" (a boolean a request may leave out), "int", an
    Enum class, or a nested DTO name ("list:SessionLogInfo", "dict:string", "dto:UserInfo").
    """

    name: str
    type: Any
    description: str | None = None
    # What a request may send, for requests only. The API's document (metadata) states these
    # and the handlers enforce them, so a client generated from the document sends nothing
    # the server refuses for its form.
    required: bool = False
    """Refused (400 NotEmpty) when missing, null or only whitespace."""
    values: tuple[str, ...] = ()
    """The enum's names a request may send, when not all of them."""
    minimum: int | None = None
    maximum: int | None = None
    max_bytes: int | None = None
    shape: str = ""
    """What the text must be: "date-time" (ISO 8601, empty for none), "phone" (a phone number,
    empty for none), "member" (a phone number, or a user's ID or email) or "sid:XX" (a Twilio
    SID: the prefix XX and 32 hex digits, empty for none)."""
    path_name: str | None = None
    """The route's path parameter that stands for the field (DeleteChatMember's memberId)."""

    @property
    def default(self) -> Any:
        if self.type == "bool":
            return False
        if isinstance(self.type, type) and issubclass(self.type, Enum):
            return next(iter(self.type)).value
        return None


ENTITY_INFO = (
    Field("id", "string", "The ID of the object"),
    Field("dateCreated", "string", "The date the object was created"),
    Field("dateLastModified", "string", "The date the object was last modified"),
    Field("createdBy", "string", "The user that created this object"),
    Field("lastModifiedBy", "string", "The user that last modified this object"),
)

CUSTOMER_BREADCRUMB = (Field("id", "string"), Field("name", "string"))

SESSION_LOG_INFO = (Field("date", "string"), Field("message", "string"))

SESSION_MEMBER_INFO = (
    Field("identity", "string"),
    Field("endpointId", "string"),
    Field("displayName", "string"),
    Field("isOriginalMember", "bool"),
    Field("avatarUrl", "string"),
    Field("applicationData", "dict:string"),
    Field("callState", SessionMemberCallState),
    Field("role", SessionMemberRoles),
    Field("callSid", "string"),
    Field("muted", "bool"),
)

SESSION_INFO_OWN = (
    Field("dialState", SessionDialState, "The state of the session"),
    Field("callState", SessionCallState, "The call state of the session"),
    Field("queueState", SessionQueueStates, "The queue state of the session"),
    Field("accountId", "string", "The ID of the account associated with the flow"),
    Field("accountName", "string", "The name of the account associated with the session"),
    Field("customerId", "string", "The ID of the customer this session is associated with"),
    Field(
        "customerBreadcrumb",
        "list:CustomerBreadcrumb",
        "The customer breadcrumb this session is associated with",
    ),
    Field("customerName", "string", "The name of the customer this session is associated with"),
    Field("endpointId", "string", "The ID of the endpoint associated with this session"),
    Field("endpointName", "string", "The name of the endpoint associated with this session"),
    Field("dateCompleted", "string", "The date the call completed"),
    Field(
        "destination",
        "string",
        "The destination of the session (e.g. what was entered into the Dial box)",
    ),
    Field("toAddress", "string", "The to address if any"),
    Field("fromAddress", "string", "The from address if any"),
    Field("fromName", "string", "The from name if any"),
    Field("answeredByName", "string", "Answered by name (if any)"),
    Field("queueMemberId", "string", "The ID of the queue member assigned to this call"),
    Field("channel", FlowChannels, "The flow channel"),
    Field("ended", "bool", "Has the session ended"),
    Field(
        "outcome",
        "string",
        "The outcome of the call: Completed, Missed, or Ended by <user name, or API key id>",
    ),
    Field("callSid", "string", "The twilio Call SID of this session"),
    Field("consoleData", "string", "Any console data for this session"),
    Field("holdQueueName", "string", "The name of the hold queue for this call"),
    Field("heldByUserId", "string", "The user ID who put this call on hold"),
    Field("holdReason", SessionHoldReasons, "The reason for the hold"),
    Field("conferenceSid", "string", "The SID of the conference if in a conference call"),
    Field("displayName", "string", "The display name for this session"),
    Field("log", "list:SessionLogInfo", "The log entries for this session"),
    Field("members", "list:SessionMemberInfo", "The members of this session"),
    Field(
        "callbackNumber",
        "string",
        "The callback number (typically used for SIP to User calls)",
    ),
    Field("answeredById", "string", "The ID of the endpoint that answered"),
    Field("direction", SessionDirections, "Is this session incoming or outgoing?"),
    Field(
        "fromPhoneNumber",
        "string",
        "The phone number that this session is coming from (used with SMS chats)",
    ),
    Field(
        "mostRecentParticipantCallSid",
        "string",
        "The Call SID of the most recently added conference participant",
    ),
    Field("wasMissed", "bool", "Was this session missed?"),
    Field("ringQueueId", "string", "The ring queue that the call is currently in"),
)

SESSION_ID = Field("sessionId", "string", "The ID of the session", required=True)

INVITE_CHAT_MEMBER = (
    SESSION_ID,
    Field(
        "memberToAdd",
        "string",
        "The member to add. This can be a cell phone number, user ID (email)",
        required=True,
        shape="member",
    ),
    Field("callerId", "string", "Outbound caller ID to use", shape="phone"),
)


GET_SESSION = (SESSION_ID,)

ADD_CONFERENCE_MEMBER = (
    SESSION_ID,
    Field("callSid", "string", "The active call that is on the voice device"),
    Field(
        "destination",
        "string",
        "The member to add: a phone number, or the ID or email of a user of the account",
        required=True,
        shape="member",
    ),
    Field("fromNumber", "string", "Outbound caller ID to use", shape="phone"),
)

DELETE_CHAT_MEMBER = (
    SESSION_ID,
    Field(
        "memberToRemove",
        "string",
        "The member to remove: its identity (phone number or user ID), a user's email, "
        "its member ID or its call SID (the route's memberId serves too)",
        required=True,
        path_name="memberId",
    ),
)

UPDATE_CONFERENCE_MEMBER = (
    SESSION_ID,
    Field("callSid", "string", "The call SID of the member's leg", required=True),
    Field("hold", "bool?", "Put the member on hold (true) or take it off hold (false)"),
    Field("muted", "bool?", "Mute (true) or unmute (false) the member"),
)

HOLD_SESSION = (
    SESSION_ID,
    Field("callSid", "string", "The local call SID: the holding agent's own leg, not held"),
    Field("reason", SessionHoldReasons, "Why the call is held"),
)

PATCH_SESSION = (
    SESSION_ID,
    Field(
        "consoleData",
        "string",
        "Free text the console keeps on the session: 16 KiB of UTF-8 at most (more is "
        "refused, 400 MaxLength; a limit in bytes, which JSON Schema's maxLength cannot state)",
        max_bytes=16 * 1024,
    ),
    Field(
        "callState",
        SessionCallState,
        "Connected takes a held session off hold; Hold holds it (no holder)",
        values=("Connected", "Hold"),
    ),
    Field("holdReason", SessionHoldReasons, "The reason for the hold"),
    Field("queueState", SessionQueueStates, "The queue state of the session"),
)

REDIRECT_SESSION = (
    SESSION_ID,
    Field(
        "destination",
        "string",
        "Where to transfer the call: a phone number or a user",
        required=True,
        shape="member",
    ),
    Field("callerId", "string", "Outbound caller ID to use", shape="phone"),
)

END_SESSION = (SESSION_ID, Field("callSid", "string", "The call SID of the agent's own leg"))

GET_ACTIVE_SESSIONS: tuple[Field, ...] = ()

LIST_SESSIONS = (
    Field(
        "startDate",
        "string",
        "Sessions created at or after this time (ISO 8601)",
        shape="date-time",
    ),
    Field("endDate", "string", "Sessions created before this time (ISO 8601)", shape="date-time"),
    Field("page", "int", "The page, from 0", minimum=0),
    Field(
        "countPerPage", "int", "Sessions per page (default 20, at most 200)", minimum=1, maximum=200
    ),
    Field("sortOrder", SortOrders, "By dateCreated; Descend (newest first) by default"),
)

GET_APP_CONFIG = (
    Field("deviceType", DeviceTypes, "The kind of softphone asking: Web, iOS or Android"),
    Field(
        "pushCredentialSid",
        "string",
        "The Twilio Push Credential (CR...) a mobile softphone is woken with for incoming "
        "calls; it goes into the token's voice grant",
        shape="sid:CR",
    ),
    Field(
        "applicationSid",
        "string",
        "Accepted for compatibility; the token's outgoing calls always go to the service's "
        "own TwiML App",
    ),
    Field("sandbox", "bool", "Accepted for compatibility (push sandbox); no effect"),
)

GET_ACTIVE_SESSIONS_RESPONSE = (Field("sessions", "list:SessionInfo"),)

GET_MY_SESSIONS: tuple[Field, ...] = ()

NEW_OUTGOING_SESSION = (
    Field(
        "flowId",
        "string",
        "A ring queue: numberToDial is dialled first and, once answered, waits in it for "
        "an agent (a progressive dial)",
    ),
    Field(
        "numberToDial",
        "string",
        "What the agent dialled: a phone number or a user of the account",
        required=True,
        shape="member",
    ),
    Field(
        "callerId",
        "string",
        "The caller ID: used when it is one of the account's numbers, else the account's "
        "first number",
        shape="phone",
    ),
)

USER_INFO = (
    Field("firstName", "string", "The user's first name"),
    Field("lastName", "string", "The user's last name"),
    Field("name", "string", "The user's full name"),
    Field("avatarUrl", "string", "The URL of the user's picture"),
)

APP_CONFIG = (
    Field("endpointId", "string", "The ID of the user the key acts as"),
    Field("accountId", "string", "The ID of the user's account"),
    Field(
        "accessToken",
        "string",
        "A Twilio Access Token (JWT) with a Voice grant for the user's Client identity",
    ),
    Field(
        "identity",
        "string",
        "The user's Twilio Client identity: what the softphone registers as, and what an "
        "invite of the user dials (client:<identity>)",
    ),
    Field("emailAddress", "string", "The user's email address"),
    Field("userInfo", "dto:UserInfo", "The user's name and picture"),
    Field("agentState", AgentStates, "The user's agent state"),
    Field("agentStateReason", AgentStateReasons, "Why the agent is in that state"),
)

SET_AGENT_STATE = (
    Field(
        "agentState",
        AgentStates,
        "The state the agent puts themselves in: Ready (offered queue calls), NotReady or "
        "LoggedOut; WrapUp is the service's",
        required=True,
        values=("Ready", "NotReady", "LoggedOut"),
    ),
)

SET_AGENT_STATE_RESPONSE = (
    Field("agentState", AgentStates, "The agent's state now"),
    Field("agentStateReason", AgentStateReasons, "Why: SetByUser"),
)

LIST_QUEUES: tuple[Field, ...] = ()

QUEUE_WAITING_CALL = (
    Field("sessionId", "string", "The session of the call"),
    Field("since", "string", "When it entered the queue (ISO 8601, UTC)"),
    Field("waitSeconds", "int", "How long it has waited, in whole seconds"),
    Field("fromAddress", "string", "Who is calling"),
    Field("queueState", SessionQueueStates, "Queued, or Ringing while an offer rings"),
)

QUEUE_AGENT_INFO = (
    Field("userId", "string", "The agent's user ID"),
    Field("name", "string", "The agent's name (else email)"),
    Field("agentState", AgentStates, "The agent's state"),
    Field("agentStateReason", AgentStateReasons, "Why the agent is in that state"),
    Field(
        "busy",
        "bool",
        "The agent has a leg in a session not yet over (invited, ringing, in a call or held)",
    ),
)

QUEUE_INFO = (
    Field("id", "string", "The queue's ID (que_...)"),
    Field("name", "string", "The queue's name"),
    Field(
        "strategy", "string", "Who is offered a call: ring-all, linear, round-robin or longest-idle"
    ),
    Field("ringTimeout", "int", "Seconds an offer rings"),
    Field("maxWait", "int", "Seconds a call waits before it overflows or ends"),
    Field("wrapUp", "int", "Seconds an agent is in WrapUp after a queue call"),
    Field("maxMisses", "int", "Offers an agent may miss in a row before going NotReady"),
    Field(
        "overflow",
        "string",
        "Where a call nobody took goes: a number (E.164) or a user ID; null: it ends",
    ),
    Field("waiting", "list:QueueWaitingCall", "The calls waiting, longest waiting first"),
    Field("agents", "list:QueueAgentInfo", "The queue's agents, in the order they were added"),
)

LIST_QUEUES_RESPONSE = (Field("queues", "list:QueueInfo"),)

LIST_SESSIONS_RESPONSE = (
    Field("items", "list:SessionInfo"),
    Field("totalCount", "int"),
    Field("totalPages", "int"),
    Field("hasMorePages", "bool"),
)


@dataclass(frozen=True)
class Dto:
    """A named DTO type: what metadata (OpenAPI, /types/python) describes."""

    name: str
    own_fields: tuple[Field, ...]
    base: Dto | None = None
    description: str | None = None

    @property
    def fields(self) -> tuple[Field, ...]:
        """Own fields first, then the base's: the order ServiceStack writes them."""
        return self.own_fields + (self.base.fields if self.base else ())


ENTITY_INFO_DTO = Dto("EntityInfo", ENTITY_INFO)
CUSTOMER_BREADCRUMB_DTO = Dto("CustomerBreadcrumb", CUSTOMER_BREADCRUMB)
SESSION_LOG_INFO_DTO = Dto("SessionLogInfo", SESSION_LOG_INFO)
SESSION_MEMBER_INFO_DTO = Dto("SessionMemberInfo", SESSION_MEMBER_INFO)
SESSION_INFO_DTO = Dto("SessionInfo", SESSION_INFO_OWN, base=ENTITY_INFO_DTO)
INVITE_CHAT_MEMBER_DTO = Dto(
    "InviteChatMember", INVITE_CHAT_MEMBER, description="Add a member to the chat session"
)
GET_SESSION_DTO = Dto("GetSession", GET_SESSION, description="Get a session by its ID")
ADD_CONFERENCE_MEMBER_DTO = Dto(
    "AddConferenceMember",
    ADD_CONFERENCE_MEMBER,
    description="Add a member to the session's conference call",
)
DELETE_CHAT_MEMBER_DTO = Dto(
    "DeleteChatMember", DELETE_CHAT_MEMBER, description="Remove a member from the session"
)
UPDATE_CONFERENCE_MEMBER_DTO = Dto(
    "UpdateConferenceMember",
    UPDATE_CONFERENCE_MEMBER,
    description="Hold or mute one member of the conference (this service's own operation)",
)
HOLD_SESSION_DTO = Dto("HoldSession", HOLD_SESSION, description="Put the session on hold")
PATCH_SESSION_DTO = Dto("PatchSession", PATCH_SESSION, description="Update the session")
REDIRECT_SESSION_DTO = Dto(
    "RedirectSession", REDIRECT_SESSION, description="Transfer the call (blind transfer)"
)
END_SESSION_DTO = Dto("EndSession", END_SESSION, description="End the session and its call")
GET_ACTIVE_SESSIONS_DTO = Dto(
    "GetActiveSessions", GET_ACTIVE_SESSIONS, description="The account's sessions not yet ended"
)
LIST_SESSIONS_DTO = Dto("ListSessions", LIST_SESSIONS, description="The account's sessions")
GET_ACTIVE_SESSIONS_RESPONSE_DTO = Dto("GetActiveSessionsResponse", GET_ACTIVE_SESSIONS_RESPONSE)
LIST_SESSIONS_RESPONSE_DTO = Dto("ListSessionsResponse", LIST_SESSIONS_RESPONSE)
GET_MY_SESSIONS_RESPONSE_DTO = Dto("GetMySessionsResponse", GET_ACTIVE_SESSIONS_RESPONSE)
GET_MY_SESSIONS_DTO = Dto(
    "GetMySessions",
    GET_MY_SESSIONS,
    description="The sessions not ended in which the key's user has a leg not yet over",
)
NEW_OUTGOING_SESSION_DTO = Dto(
    "NewOutgoingSession",
    NEW_OUTGOING_SESSION,
    description="Click to call: ring the key's user, then dial numberToDial into the call",
)
USER_INFO_DTO = Dto("UserInfo", USER_INFO)
APP_CONFIG_DTO = Dto("AppConfig", APP_CONFIG)
GET_APP_CONFIG_DTO = Dto(
    "GetAppConfig",
    GET_APP_CONFIG,
    description="The softphone's configuration for the user the key acts as: its Twilio "
    "access token, identity and agent state",
)
SET_AGENT_STATE_DTO = Dto(
    "SetAgentState",
    SET_AGENT_STATE,
    description="Set the agent state of the user the key acts as (this service's own operation)",
)
SET_AGENT_STATE_RESPONSE_DTO = Dto("SetAgentStateResponse", SET_AGENT_STATE_RESPONSE)
QUEUE_WAITING_CALL_DTO = Dto("QueueWaitingCall", QUEUE_WAITING_CALL)
QUEUE_AGENT_INFO_DTO = Dto("QueueAgentInfo", QUEUE_AGENT_INFO)
QUEUE_INFO_DTO = Dto("QueueInfo", QUEUE_INFO)
LIST_QUEUES_RESPONSE_DTO = Dto("ListQueuesResponse", LIST_QUEUES_RESPONSE)
LIST_QUEUES_DTO = Dto(
    "ListQueues",
    LIST_QUEUES,
    description="The account's ring queues, with their agents and the calls waiting (this "
    "service's own operation)",
)

# Every DTO type, dependencies first (generated code defines them in this order).
DTOS = (
    CUSTOMER_BREADCRUMB_DTO,
    SESSION_LOG_INFO_DTO,
    SESSION_MEMBER_INFO_DTO,
    ENTITY_INFO_DTO,
    SESSION_INFO_DTO,
    GET_ACTIVE_SESSIONS_RESPONSE_DTO,
    LIST_SESSIONS_RESPONSE_DTO,
    GET_MY_SESSIONS_RESPONSE_DTO,
    USER_INFO_DTO,
    APP_CONFIG_DTO,
    SET_AGENT_STATE_RESPONSE_DTO,
    QUEUE_WAITING_CALL_DTO,
    QUEUE_AGENT_INFO_DTO,
    QUEUE_INFO_DTO,
    LIST_QUEUES_RESPONSE_DTO,
    INVITE_CHAT_MEMBER_DTO,
    GET_SESSION_DTO,
    ADD_CONFERENCE_MEMBER_DTO,
    DELETE_CHAT_MEMBER_DTO,
    UPDATE_CONFERENCE_MEMBER_DTO,
    HOLD_SESSION_DTO,
    PATCH_SESSION_DTO,
    REDIRECT_SESSION_DTO,
    END_SESSION_DTO,
    GET_ACTIVE_SESSIONS_DTO,
    LIST_SESSIONS_DTO,
    GET_APP_CONFIG_DTO,
    GET_MY_SESSIONS_DTO,
    NEW_OUTGOING_SESSION_DTO,
    SET_AGENT_STATE_DTO,
    LIST_QUEUES_DTO,
)
ENUMS = (
    SessionDialState,
    SessionCallState,
    SessionQueueStates,
    FlowChannels,
    SessionHoldReasons,
    SessionMemberCallState,
    SessionMemberRoles,
    SessionDirections,
    SortOrders,
    DeviceTypes,
    AgentStates,
    AgentStateReasons,
)

# In the order of the seed's sample: SessionInfo's own fields, then EntityInfo's.
SESSION_INFO = SESSION_INFO_DTO.fields


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# How each SessionInfo field is written from its stored text: the JSON of its key, and the
# JSON of its value when the session hash has none. Worked out once, so answering a session
# is a join of bytes, not a JSON encoder call per field.
_STRING, _BOOL, _RAW, _MEMBERS, _LOG = range(5)


def _kind(field: Field) -> int:
    if field.name == "members":
        return _MEMBERS
    if field.name == "log":
        return _LOG
    if field.type == "bool":
        return _BOOL
    if isinstance(field.type, str) and field.type.startswith(("list:", "dict:")):
        return _RAW  # stored as JSON by our own scripts
    return _STRING


_PLAN = tuple(
    (f.name, b'"' + f.name.encode() + b'":', _kind(f), _dumps(f.default).encode())
    for f in SESSION_INFO
)


class SessionView:
    """A stored session, ready to answer as a full SessionInfo.

    Members and log entries arrive from Redis already as JSON fragments, joined
    with commas here (the scripts write members in SessionMemberInfo's field
    order and keep a session's members joined), so answering in JSON joins bytes
    instead of building and re-encoding a dict per member: the cost of a reply
    barely grows with the size of the session.
    """

    __slots__ = ("log", "members", "raw")

    def __init__(self, raw: dict[str, str], members: list[bytes], log: list[bytes]) -> None:
        self.raw, self.members, self.log = raw, members, log

    @property
    def account_id(self) -> str | None:
        return self.raw.get("accountId")

    def to_json(self) -> bytes:
        raw = self.raw
        out = [b"{"]
        for name, key, kind, default in _PLAN:
            out.append(key)
            if kind == _MEMBERS:
                out += (b"[", b",".join(self.members), b"]")
            elif kind == _LOG:
                out += (b"[", b",".join(self.log), b"]")
            else:
                value = raw.get(name)
                if value is None:
                    out.append(default)
                elif kind == _STRING:
                    out.append(encode_basestring(value).encode())
                elif kind == _BOOL:
                    out.append(b"true" if value == "true" else b"false")
                else:
                    out.append(value.encode())
            out.append(b",")
        out[-1] = b"}"
        return b"".join(out)  # one copy of the members' and log's bytes, not three

    def to_dict(self) -> dict[str, Any]:
        """For formats other than JSON (JSV) and for tests."""
        return json.loads(self.to_json())


class SessionListView:
    """A list of sessions in a response DTO (`{"sessions": [...]}`, or ListSessions' page),
    joined from each session's JSON as SessionView writes it."""

    __slots__ = ("fields", "key", "sessions")

    def __init__(self, key: str, sessions: list[SessionView], **fields: Any) -> None:
        self.key, self.sessions, self.fields = key, sessions, fields

    def to_json(self) -> bytes:
        parts = [b'{"', self.key.encode(), b'":[', b",".join(s.to_json() for s in self.sessions)]
        parts.append(b"]")
        for name, value in self.fields.items():
            parts += (b',"', name.encode(), b'":', _dumps(value).encode())
        parts.append(b"}")
        return b"".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())
