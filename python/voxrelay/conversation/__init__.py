"""The spoken conversation: streaming STT, turn-taking, LLM and TTS behind small interfaces.

Deliberately empty: everything lives in modules (`endpoint`, `providers`, `scripted_llm`,
`clauses`, `context`, ...) so that importing the package costs nothing and no optional engine
is loaded until a registry factory asks for it.
"""
