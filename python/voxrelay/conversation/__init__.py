"""The spoken conversation: turn-taking on the transcript, providers and the dialogue loop."""
