"""Drives `sqlagent serve` with the official OpenAI Python client.

Usage: openai_client.py BASE_URL API_KEY MODEL QUESTION
Prints one JSON object: the listed models, the plain reply, the streamed
reply (content joined), the finish reasons, the usage, and the error a
bad request raises.
"""

import json
import sys

import openai


def main() -> None:
    base_url, api_key, model, question = sys.argv[1:5]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    models = [m.id for m in client.models.list().data]
    messages = [{"role": "user", "content": question}]
    plain = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=48
    )
    chunks = client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=0,
        max_tokens=48,
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed, finish, stream_usage = [], None, None
    for chunk in chunks:
        if chunk.usage is not None:
            stream_usage = chunk.usage.total_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                streamed.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    completion = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, stop=["."]
    )
    try:
        client.chat.completions.create(
            model="no-such-model", messages=messages, max_tokens=8
        )
        not_found = None
    except openai.NotFoundError as e:
        not_found = {"status": e.status_code, "code": e.code}
    wrong_key = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
    try:
        wrong_key.models.list()
        unauthorized = None
    except openai.AuthenticationError as e:
        unauthorized = {"status": e.status_code, "code": e.code}
    print(
        json.dumps(
            {
                "models": models,
                "plain": plain.choices[0].message.content,
                "plain_finish": plain.choices[0].finish_reason,
                "plain_usage": plain.usage.total_tokens,
                "streamed": "".join(streamed),
                "streamed_finish": finish,
                "streamed_usage": stream_usage,
                "completion": completion.choices[0].text,
                "not_found": not_found,
                "unauthorized": unauthorized,
            }
        )
    )


if __name__ == "__main__":
    main()
