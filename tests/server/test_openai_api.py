"""The OpenAI-compatible server, driven by the official ``openai`` client and by plain HTTP.

One server (a tiny random model) runs on a free localhost port for the module; the oracle for
every text is ``generate`` on the same weights.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from llmbricks.core.store.runs import load_run
from llmbricks.core.tasks.chat import messages_prompt_ids
from llmbricks.core.tasks.generation import generate
from llmbricks.core.tasks.instruction import end_token, prompt_template
from tests.server.serving import live_server, tiny_model_dir

MODEL = "tiny"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("serve") / MODEL)


@pytest.fixture(scope="module")
def loaded(model_dir):
    config, model, tokenizer = load_run(model_dir)
    return config, model, tokenizer


@pytest.fixture(scope="module")
def server(model_dir):
    with live_server(model_dir, max_batch=4) as (url, engine):
        yield url, engine


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0, timeout=60)


def greedy(loaded, prompt: str, n: int) -> str:
    _, model, tokenizer = loaded
    return generate(model, tokenizer, prompt, max_new_tokens=n)


def chat_expected(loaded, messages, n: int) -> tuple[str, int]:
    config, model, tokenizer = loaded
    template = prompt_template(config, tokenizer=tokenizer)
    ids = messages_prompt_ids(tokenizer, template, messages)
    text = generate(model, tokenizer, "x", prompt_ids=[ids], max_new_tokens=n,
                    stop=end_token(tokenizer, template))
    return text, len(ids)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_a_completion_is_the_greedy_continuation_with_usage(client, loaded):
    done = client.completions.create(model=MODEL, prompt="Hello there", max_tokens=12,
                                     temperature=0)
    assert done.choices[0].text == greedy(loaded, "Hello there", 12)
    assert done.choices[0].finish_reason == "length"
    prompt_tokens = len(loaded[2].encode("Hello there", allowed_special="all"))
    assert (done.usage.prompt_tokens, done.usage.completion_tokens,
            done.usage.total_tokens) == (prompt_tokens, 12, prompt_tokens + 12)
    assert done.object == "text_completion" and done.id.startswith("cmpl-")


def test_a_streamed_completion_says_the_same_and_ends_with_usage(client, loaded):
    chunks = list(client.completions.create(model=MODEL, prompt="Hello there", max_tokens=12,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == greedy(loaded, "Hello there", 12)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_chat_uses_the_template_streamed_or_not(client, loaded):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "The quick fox."},
                {"role": "user", "content": "And the dog?"}]
    expected, prompt_tokens = chat_expected(loaded, messages, 10)
    done = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10,
                                          temperature=0)
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == expected
    assert done.usage.prompt_tokens == prompt_tokens
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == done.choices[0].finish_reason


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_sequence_cuts_the_text_before_it(client, loaded, stream):
    full = greedy(loaded, "Hello there", 30)
    stop = full[8:11]
    cut = full[:full.index(stop)]
    response = client.completions.create(model=MODEL, prompt="Hello there", max_tokens=30,
                                         temperature=0, stop=[stop, "never appears"],
                                         stream=stream)
    if stream:
        chunks = list(response)
        text = "".join(c.choices[0].text for c in chunks)
        reason = chunks[-1].choices[0].finish_reason
    else:
        text, reason = response.choices[0].text, response.choices[0].finish_reason
    assert (text, reason) == (cut, "stop")


def test_seeded_sampling_repeats(client):
    def ask():
        return client.completions.create(model=MODEL, prompt="The", max_tokens=10,
                                         temperature=0.9, seed=11).choices[0].text
    assert ask() == ask()


@pytest.mark.parametrize("params,param,words", [
    ({"temperature": 5}, "temperature", "less than or equal to 2"),
    ({"n": 2}, "n", "n must be 1"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate", "Unrecognized request argument"),
    ({"logprobs": 2}, "logprobs", "not supported"),
])
def test_a_bad_parameter_is_a_400_in_openais_shape(client, params, param, words):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, **params)
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]


def test_an_over_long_prompt_is_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="Hello there. " * 400, max_tokens=4)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert "context is 512 tokens" in caught.value.body["message"]


def test_chat_answers_up_to_the_rest_of_the_context_by_default(client, server):
    engine = server[1]
    short = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], temperature=0, seed=3)
    assert short.usage.prompt_tokens + short.usage.completion_tokens <= engine.max_len
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello there. " * 400}])
    assert caught.value.body["code"] == "context_length_exceeded"
    assert caught.value.body["param"] == "messages"


def test_a_conversation_must_end_with_the_user(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[
            {"role": "user", "content": "Hi"}, {"role": "system", "content": "late"}])
    assert caught.value.body["param"] == "messages"
    assert "system messages must come first" in caught.value.body["message"]


def test_text_the_model_cannot_take_is_a_400_not_a_crash(server):
    url = server[0]
    surrogate = httpx.post(f"{url}/v1/completions", timeout=30,
                           headers={"content-type": "application/json"},
                           content=b'{"model": "tiny", "prompt": "a\\ud800b", "max_tokens": 2}')
    assert surrogate.status_code == 400 and surrogate.json()["error"]["param"] == "prompt"
    assert "surrogate" in surrogate.json()["error"]["message"]
    image = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]})
    assert image.status_code == 400 and image.json()["error"]["param"] == "messages"
    assert "only text content parts" in image.json()["error"]["message"]


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="gpt-4", prompt="Hi", max_tokens=2)
    assert caught.value.body["code"] == "model_not_found"


def test_plain_http_gets_server_sent_events_and_json_errors(server):
    url = server[0]
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 5, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
    bad = httpx.post(f"{url}/v1/completions", content=b"{not json", timeout=30,
                     headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json()
    health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["status"] == "ok" and health["batching"] is True


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    url, engine = server
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 120, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line).startswith("data: ")
        assert engine.stats()["running"] == 1
    # The response is closed after one event: the engine drops the stream before its budget.
    wait_for(lambda: engine.stats()["running"] == 0)
    steps = engine.stats()["steps"]
    time.sleep(0.2)
    assert engine.stats()["steps"] == steps  # nothing runs for the gone client


def test_the_api_key_is_required_when_set(model_dir):
    with live_server(model_dir, api_key="sekret") as (url, _):
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.models.list()
        assert caught.value.body["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 401
        right = openai.OpenAI(base_url=f"{url}/v1", api_key="sekret", max_retries=0)
        assert right.completions.create(model=MODEL, prompt="Hi", max_tokens=3).usage.completion_tokens == 3
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200  # open: a probe


def test_past_the_queue_limit_requests_are_answered_503_at_once(model_dir):
    with live_server(model_dir, max_batch=1, max_queue=1) as (url, engine):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        # The one slot and the one place in the queue are taken (no stop token ends these).
        hold = [engine.submit([1, 2], engine.sampling(max_new_tokens=500))]
        wait_for(lambda: engine.stats()["running"] == 1)
        hold.append(engine.submit([1, 2], engine.sampling(max_new_tokens=500)))
        assert engine.stats()["waiting"] == 1
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            client.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
        assert time.monotonic() - started < 5
        for request in hold:
            request.cancel()
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == "1"
        assert caught.value.body["code"] == "overloaded"
        wait_for(lambda: engine.stats()["running"] + engine.stats()["waiting"] == 0)
