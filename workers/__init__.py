"""The dial worker: RQ jobs that add invited members to Twilio conferences."""
