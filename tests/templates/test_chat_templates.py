"""Built-in chat templates against transformers' own Jinja renderer (what
``apply_chat_template`` uses) on the templates as published: the same text, and the loss mask
equal to the assistant spans that ``{% generation %}`` marks in the same template."""

from __future__ import annotations

import pytest

from framework.core.errors import InputError
from framework.core.registry import TEMPLATES
from plugins.templates.chat import text_and_spans

render_jinja = pytest.importorskip("transformers.utils.chat_template_utils").render_jinja_template

# tokenizer_config.json "chat_template" of the published models
PUBLISHED = {
    # ChatML as in OpenHermes-2.5 / the Hugging Face chat-template docs
    "chatml": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    # meta-llama/Meta-Llama-3-8B-Instruct
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] "
        "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
        "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
        "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
}
# the same templates with the assistant's part inside {% generation %} (transformers then
# reports those character spans: return_assistant_tokens_mask)
MARKED = {
    "chatml": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
        "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + "
        "'<|im_end|>' }}{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}"
        "{% endif %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama3": (
        "{% for message in messages %}{% set header = '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' %}{% if loop.index0 == 0 %}{% set header = bos_token + header"
        " %}{% endif %}{{ header }}{% if message['role'] == 'assistant' %}{% generation %}"
        "{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}{% else %}"
        "{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{% endif %}"
    ),
}
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
    [
        {"role": "system", "content": "You sort lists.\n"},
        {"role": "user", "content": "  sort: 3 1 2  "},
        {"role": "assistant", "content": "1 2 3\n"},
        {"role": "user", "content": "now descending, s'il vous plaît — ünïcödé ✓ 日本語"},
        {"role": "assistant", "content": " 3 2 1 🎉 "},
    ],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi\n\nthere"}],
]


def _reference(name: str, conversation, marked: bool, add_generation_prompt: bool):
    rendered, spans = render_jinja(
        [conversation], chat_template=(MARKED if marked else PUBLISHED)[name],
        return_assistant_tokens_mask=True, add_generation_prompt=add_generation_prompt,
        bos_token="<|begin_of_text|>",
    )  # fmt: skip
    return rendered[0], [tuple(s) for s in spans[0]]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_text_and_mask_equal_transformers(name, index, add_generation_prompt):
    conversation = CONVERSATIONS[index]
    template = TEMPLATES.build(name)
    text, spans = text_and_spans(template.render(conversation, add_generation_prompt))
    published, _ = _reference(name, conversation, False, add_generation_prompt)
    marked, assistant_spans = _reference(name, conversation, True, add_generation_prompt)
    assert marked == published  # the marking does not change the text
    assert text == published
    assert spans == assistant_spans
    assert all(text[a:b].endswith(template.end_of_turn) for a, b in spans)
    assert len(spans) == sum(m["role"] == "assistant" for m in conversation)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
@pytest.mark.parametrize(
    "messages,problem",
    [
        ([], "no messages"),
        ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
        ([{"role": "user", "content": "  "}], "empty"),
        ([{"role": "user", "content": None}], "non-text"),
    ],
)
def test_malformed_conversations_raise_one_line(name, messages, problem):
    with pytest.raises(InputError, match=problem):
        TEMPLATES.build(name).render(messages)
