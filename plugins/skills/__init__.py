"""Synthetic skills (``skills`` kind): tasks generated deterministically offline, with one exact
answer, that show what supervised fine-tuning teaches (the quickstart's ``sft`` stage)."""
