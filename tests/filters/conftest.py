import pytest

from framework.data.document import Document


@pytest.fixture
def doc():
    """Build a Document from text (and optional url)."""

    def make(text: str, url: str | None = None) -> Document:
        return Document("t", text, {"url": url} if url else {})

    return make
