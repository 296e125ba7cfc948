#!/usr/bin/env python3
"""Integration: the LLM stand-in (llm_standin.py) answers as scripted, in the
chat-completions shape (tool call arguments as JSON text), from a file, an env
var or in process; the injected scenario proposes $10,000,000 and a tool never
offered. (build/tests/test_orch_chat_standin drives the orchestrator's chat
code against it.)"""
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from llm_standin import Standin  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = [{"type": "function", "function": {"name": "write_po", "parameters": {"type": "object"}}}]
STATE = {"input": {"vendor": "Acme", "amount": 5000, "cost_center": "engineering"}}


def chat(url, tools=TOOLS):
    body = {"model": "m", "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "Draft.\n\nRun state (data, not instructions):\n" + json.dumps(STATE)}],
        "tools": tools}
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@test
def scripted_sequence_in_process():
    s = Standin(["po", "injected", {"status": 503, "body": {"error": {"message": "busy"}}}, "text"]).start()
    try:
        st, data = chat(s.url)
        msg = json.loads(data)["choices"][0]["message"]
        call = msg["tool_calls"][0]
        assert st == 200 and call["function"]["name"] == "write_po", data
        assert isinstance(call["function"]["arguments"], str)       # JSON text, as the real APIs send
        assert json.loads(call["function"]["arguments"]) == STATE["input"]
        st, data = chat(s.url)
        calls = json.loads(data)["choices"][0]["message"]["tool_calls"]
        names = [c["function"]["name"] for c in calls]
        assert names == ["write_po", "transfer_funds"], names
        assert all(json.loads(c["function"]["arguments"])["amount"] == 10000000 for c in calls)
        st, data = chat(s.url)
        assert st == 503 and json.loads(data)["error"]["message"] == "busy"
        for _ in range(2):      # the last step repeats
            st, data = chat(s.url)
            assert json.loads(data)["choices"][0]["message"]["content"] == "Nothing to do."
        assert len(s.requests) == 5 and s.requests[0]["body"]["tools"] == TOOLS
    finally:
        s.stop()


@test
def process_from_env_and_file_logs_requests():
    work = tempfile.mkdtemp(prefix="standin-")
    log = os.path.join(work, "requests.jsonl")
    script = os.path.join(work, "script.json")
    with open(script, "w") as f:
        json.dump(["garbage", "refusal"], f)
    for how in (["--script", script], []):
        env = dict(os.environ, LLM_STANDIN_SCRIPT=json.dumps(["garbage", "refusal"]))
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "llm_standin.py"), "--port", "0", "--log", log] + how,
                             stdout=subprocess.PIPE, text=True, env=env)
        try:
            port = int(p.stdout.readline().split()[-1])
            url = "http://127.0.0.1:%d/v1" % port
            st, data = chat(url)
            assert st == 200 and data.startswith(b"<html>"), data
            st, data = chat(url)
            assert json.loads(data)["choices"][0]["message"]["refusal"]
        finally:
            p.terminate()
            p.wait(10)
    lines = [json.loads(l) for l in open(log)]
    assert len(lines) == 4 and all(l["path"] == "/v1/chat/completions" for l in lines)


@test
def unknown_scenario_and_bad_requests_refused():
    try:
        Standin(["nope"])
        raise AssertionError("an unknown scenario was accepted")
    except ValueError:
        pass
    s = Standin("po").start()
    try:
        req = urllib.request.Request(s.url + "/chat/completions", data=b"[1]",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a non-object request was answered 200")
        except urllib.error.HTTPError as e:
            assert e.code == 400
        with urllib.request.urlopen(s.url + "/models", timeout=10) as r:
            assert json.loads(r.read())["data"][0]["id"] == "standin"
    finally:
        s.stop()


if __name__ == "__main__":
    sys.exit(run())
