"""Chat templates (``templates`` kind): OpenAI-style ``messages`` → the model's chat text, as
segments marking the assistant's characters (its content and end-of-turn token) for the loss."""
