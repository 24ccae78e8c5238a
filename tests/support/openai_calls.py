"""Makes the calls a test asks for with the `openai` client and prints what
came back, for the end-to-end tests of inferd's OpenAI-compatible HTTP API
(tests/e2e/openai.rs).

    python openai_calls.py http://HOST:PORT/v1 API_KEY < calls.json > answers.json

calls.json is a list of calls, each {"call": NAME, "args": {...}}, NAME one
of models.list, embeddings.create, completions.create,
audio.transcriptions.create, audio.translations.create (args.file: a path),
audio.speech.create (the audio's bytes are answered base64-encoded). A
completion with stream=true answers the list of its chunks. The answer of
each call is {"ok": ...} or {"error": {"class", "status", "body"}}: the
client's exception class, the HTTP status and the error object.
"""

import base64
import json
import sys

import openai


def run(client, call):
    kind, args = call["call"], dict(call.get("args", {}))
    if kind == "models.list":
        return [m.model_dump() for m in client.models.list()]
    if kind == "embeddings.create":
        return client.embeddings.create(**args).model_dump()
    if kind == "completions.create":
        answer = client.completions.create(**args)
        if args.get("stream"):
            return [chunk.model_dump() for chunk in answer]
        return answer.model_dump()
    if kind in ("audio.transcriptions.create", "audio.translations.create"):
        endpoint = client.audio.transcriptions if "transcriptions" in kind else client.audio.translations
        with open(args.pop("file"), "rb") as f:
            answer = endpoint.create(file=f, **args)
        return answer if isinstance(answer, str) else answer.model_dump()
    if kind == "audio.speech.create":
        answer = client.audio.speech.create(**args)
        return {"base64": base64.b64encode(answer.read()).decode(), "content_type": answer.response.headers["content-type"]}
    raise ValueError(f"unknown call {kind}")


def main():
    client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=120)
    answers = []
    for call in json.load(sys.stdin):
        try:
            answers.append({"ok": run(client, call)})
        except openai.APIStatusError as e:
            answers.append({"error": {"class": type(e).__name__, "status": e.status_code, "body": e.body}})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
