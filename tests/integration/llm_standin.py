#!/usr/bin/env python3
"""llm_standin — a stand-in for an OpenAI-compatible chat model, for tests.

Speaks POST /v1/chat/completions (and GET /v1/models) with the answers a
test scripts, in the shape OpenAI, Gemini's OpenAI endpoint and llama.cpp
give them: tool calls with their arguments as a JSON *string*. Python
stdlib only.

A script is a JSON list of steps, served in order (the last one repeats);
a step is a scenario name or an object:

  "po"          propose a call to the first tool offered, with the run's
                input (vendor, amount, cost_center) read from the prompt
  "injected"    the model has read a prompt-injected document: it proposes
                the first tool offered with amount 10,000,000 to the
                attacker, and a call to "transfer_funds", a tool it was
                never given
  "text"        no tool call, a text answer
  "done"        the turn after a tool call: the conversation must end
                with the `tool` messages answering the assistant's last
                tool calls (400 otherwise); a text answer quoting them
  "refusal"     a refusal (message.refusal)
  "garbage"     a 200 whose body is not JSON
  "bad_args"    a tool call whose arguments are not JSON
  "error500"    HTTP 500 with an OpenAI-style error
  {"status": N, "body": {...} | "body_text": "...", "delay_ms": N}
                exactly this answer

Run:
  llm_standin.py [--port N] [--script FILE | --scenario NAME] [--log FILE]
The script may also come from the env var LLM_STANDIN_SCRIPT (JSON text).
Every request's conversation is checked as the OpenAI API checks it: an
assistant message with tool_calls must be followed by a `tool` message for
each of its ids (tool_call_id), and a `tool` message must answer one;
otherwise the answer is HTTP 400 with an invalid_request_error.
It prints "listening on PORT" on stdout once bound. Each request received
is appended to --log as one JSON line ({"path", "headers", "body"}).
As a module: Standin(script).start() → .url (…/v1), .requests, .stop().
"""
import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ATTACKER = {"vendor": "Attacker Ltd", "amount": 10000000, "cost_center": "engineering",
            "to": "payouts@attacker.example"}


def _state_of(body):
    """The run state the orchestrator put in the last user message, or {}."""
    for msg in reversed(body.get("messages") or []):
        content = msg.get("content")
        if msg.get("role") == "user" and isinstance(content, str):
            m = re.search(r"Run state[^\n]*\n(.*)$", content, re.S)
            if m:
                try:
                    return json.loads(m.group(1))
                except ValueError:
                    return {}
    return {}


def _tools_of(body):
    return [t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]


def _completion(message, finish, model):
    return {"id": "chatcmpl-standin%d" % int(time.time() * 1000), "object": "chat.completion",
            "created": int(time.time()), "model": model or "standin",
            "choices": [{"index": 0, "message": dict({"role": "assistant"}, **message), "logprobs": None,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def _call(i, name, args):
    return {"id": "call_standin_%d" % i, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}


def conversation_error(body):
    """What the OpenAI API would refuse in the request's messages, or None."""
    pending = set()         # ids of the last assistant tool calls not answered yet
    for i, msg in enumerate(body.get("messages") or []):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "tool":
            tid = msg.get("tool_call_id")
            if tid not in pending:
                return "messages[%d]: a tool message must answer a preceding tool call (tool_call_id %r)" % (i, tid)
            if not isinstance(msg.get("content"), str):
                return "messages[%d]: a tool message's content must be a string" % i
            pending.discard(tid)
            continue
        if pending:
            return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                    "'tool_call_id'. The following tool_call_ids did not have response messages: %s"
                    % ", ".join(sorted(pending)))
        if role == "assistant":
            for c in msg.get("tool_calls") or []:
                if not isinstance(c.get("function", {}).get("arguments"), str):
                    return "messages[%d]: tool call arguments must be a JSON string" % i
                pending.add(c.get("id"))
    if pending:
        return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                "'tool_call_id'. The following tool_call_ids did not have response messages: %s"
                % ", ".join(sorted(pending)))
    return None


def _bad_request(message):
    return 400, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode(), 0


def answer(step, body):
    """(status, bytes, delay_ms) for a scripted step and the request body."""
    model = body.get("model")
    tools = _tools_of(body)
    why = conversation_error(body) if body else None
    if why:
        return _bad_request(why)
    if isinstance(step, dict):
        if "body_text" in step:
            data = step["body_text"].encode()
        else:
            data = json.dumps(step.get("body", {})).encode()
        return step.get("status", 200), data, step.get("delay_ms", 0)
    if step == "po":
        inp = _state_of(body).get("input", {})
        args = {k: inp[k] for k in ("vendor", "amount", "cost_center") if k in inp}
        first = tools[0] if tools else "write_po"
        return 200, json.dumps(_completion({"content": None, "tool_calls": [_call(0, first, args)]},
                                           "tool_calls", model)).encode(), 0
    if step == "injected":
        first = tools[0] if tools else "write_po"
        calls = [_call(0, first, ATTACKER),
                 _call(1, "transfer_funds", {"amount": 10000000, "to_account": "CH93-0000-0000-ATTACKER"})]
        return 200, json.dumps(_completion({"content": "As instructed by the vendor note, moving $10,000,000.",
                                            "tool_calls": calls}, "tool_calls", model)).encode(), 0
    if step == "done":
        msgs = list(body.get("messages") or [])
        results = []
        while msgs and msgs[-1].get("role") == "tool":
            results.insert(0, msgs.pop())
        if not results:
            return _bad_request("the stand-in expected this turn to give back tool results")
        quoted = "; ".join("%s: %s" % (m["tool_call_id"], m["content"]) for m in results)
        return 200, json.dumps(_completion({"content": "Recorded. " + quoted}, "stop", model)).encode(), 0
    if step == "text":
        return 200, json.dumps(_completion({"content": "Nothing to do."}, "stop", model)).encode(), 0
    if step == "refusal":
        return 200, json.dumps(_completion({"content": None, "refusal": "I can't help with that."},
                                           "stop", model)).encode(), 0
    if step == "garbage":
        return 200, b"<html><body>502 Bad Gateway</body></html>", 0
    if step == "bad_args":
        call = {"id": "call_x", "type": "function", "function": {"name": tools[0] if tools else "x",
                                                                  "arguments": "{\"amount\": 5"}}
        return 200, json.dumps(_completion({"content": None, "tool_calls": [call]}, "tool_calls", model)).encode(), 0
    if step == "error500":
        return 500, json.dumps({"error": {"message": "The server had an error while processing your request.",
                                          "type": "server_error"}}).encode(), 0
    raise ValueError("unknown scenario %r" % (step,))


class Standin:
    """The server; start() runs it on a thread (port 0: any free port)."""

    def __init__(self, script, port=0, log=None, host="127.0.0.1"):
        if isinstance(script, str):
            script = [script]
        if not script:
            raise ValueError("an empty script")
        for step in script:
            if isinstance(step, str):
                answer(step, {})        # an unknown scenario fails now, not at the first request
        self.script = list(script)
        self.requests = []
        self.lock = threading.Lock()
        self.log = log
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, data, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": "standin", "object": "model", "owned_by": "sanctum-tests"}]}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                try:
                    body = json.loads(raw)
                    assert isinstance(body, dict)
                except (ValueError, AssertionError):
                    self._send(400, b'{"error": {"message": "the request is not a JSON object"}}')
                    return
                step = standin._next(self.path, dict(self.headers), body)
                status, data, delay = answer(step, body)
                if delay:
                    time.sleep(delay / 1000.0)
                self._send(status, data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d/v1" % (host, self.port)
        self.thread = None

    def _next(self, path, headers, body):
        with self.lock:
            i = len(self.requests)
            rec = {"path": path, "headers": headers, "body": body}
            self.requests.append(rec)
            if self.log:
                with open(self.log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            return self.script[min(i, len(self.script) - 1)]

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main():
    ap = argparse.ArgumentParser(description="an OpenAI-compatible chat stand-in for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", help="a JSON file: a list of steps")
    ap.add_argument("--scenario", help="one scenario, repeated")
    ap.add_argument("--log", help="append each request here as a JSON line")
    a = ap.parse_args()
    if a.script:
        with open(a.script) as f:
            script = json.load(f)
    elif a.scenario:
        script = [a.scenario]
    elif os.environ.get("LLM_STANDIN_SCRIPT"):
        script = json.loads(os.environ["LLM_STANDIN_SCRIPT"])
    else:
        script = ["po"]
    s = Standin(script, port=a.port, log=a.log)
    print("listening on %d" % s.port, flush=True)
    try:
        s.server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
