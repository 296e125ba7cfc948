#!/usr/bin/env python3
"""Integration: a chat agent (the LLM stand-in speaking the chat-completions
API) whose proposals go through the same decide/approve/lease path as
anything — and a prompt-injected model that executes nothing.

- "po": the model proposes write_po for the run's input ($5,000): allowed,
  one ERP row, the run COMPLETED;
- "injected": the model proposes write_po for $10,000,000 to an attacker
  and transfer_funds, a tool it was never given: transfer_funds is refused
  (node.finished outcome refused, a step.refused audit entry), the
  $10,000,000 write is denied by policy (REJECTED); nothing reaches the
  sandbox; both are in the audit log.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from llm_standin import Standin  # noqa: E402
from orch_cluster import OrchCluster, TERMINAL  # noqa: E402

WORKFLOW = {
    "workflow": "assistant",
    "description": "A chat model drafts the purchase order; its tool calls are gated like any step.",
    "nodes": [
        {"id": "assistant", "kind": "agent", "agent": "chat", "output": "reply", "tools": ["write_po"],
         "prompt": "Raise the purchase order the requester asks for."},
        {"id": "write_po", "kind": "tool", "connector": "sheets.append", "connection": "sheets",
         "description": "Append a purchase order row to the ERP sheet.",
         "parameters": {"type": "object", "properties": {"vendor": {"type": "string"},
                                                          "amount": {"type": "integer"},
                                                          "cost_center": {"type": "string"}},
                        "required": ["vendor", "amount", "cost_center"]},
         "scopes": ["https://www.googleapis.com/auth/spreadsheets"],
         "args": {"spreadsheet_id": "chat", "range": "POs!A1",
                  "values": [["{{call.vendor}}", "{{call.amount}}", "{{call.cost_center}}"]]},
         "policy": {"principal": "agent:po-drafter", "action": "po.write",
                    "resource": "cost_center:{{call.cost_center}}", "context": {"amount": "{{call.amount}}"}}},
        {"id": "done", "kind": "end"}
    ],
    "edges": [{"from": "assistant", "to": "done"}]
}


class Ctx(OrchCluster):
    def __init__(self):
        self.llm = Standin(["po", "injected"]).start()
        super().__init__(orch_lines="llm_base_url = %s\nllm_model = standin\n" % self.llm.url,
                         workflows={"assistant.json": json.dumps(WORKFLOW)})

    def close(self):
        super().close()
        self.llm.stop()


@test
def proposal_runs_through_the_gate(x):
    rid = x.start_run(5000, workflow="assistant")
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "COMPLETED", v
    assert [n["node"] for n in v["nodes"]] == ["assistant", "write_po", "done"], v["nodes"]
    assert x.rows("chat") == [["Acme", 5000, "engineering"]], x.rows("chat")


@test
def injected_model_executes_nothing(x):
    rid = x.start_run(5000, workflow="assistant")
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "REJECTED", v
    agent = [n for n in v["nodes"] if n["node"] == "assistant"][0]
    assert [r["tool"] for r in agent["refused"]] == ["transfer_funds"], agent
    w = [n for n in v["nodes"] if n["node"] == "write_po"][0]
    assert w["outcome"] == "rejected" and w["decision"]["result"] == "deny", w
    assert x.rows("chat") == [["Acme", 5000, "engineering"]], "nothing new in the sandbox: %s" % x.rows("chat")
    time.sleep(1.5)
    entries = x.audit_entries()
    refused = [e for e in entries if e.get("kind") == "append" and e["entry"].get("kind") == "step.refused"
               and e["entry"]["run"] == rid]
    assert [e["entry"]["tool"] for e in refused] == ["transfer_funds"], refused
    events = [e for e in entries if e.get("kind") == "event" and e.get("pub") == "svc:orchestrator"
              and e["body"].get("run") == rid]
    assert any(e["type"] == "node.finished" and e["body"].get("outcome") == "refused"
               and e["body"].get("tool") == "transfer_funds" for e in events), events
    assert any(e["type"] == "node.finished" and e["body"].get("outcome") == "rejected"
               and e["body"]["node"] == "write_po" for e in events), events
    assert any(e["type"] == "run.rejected" for e in events), events
    intents = [e for e in entries if e.get("kind") == "append" and e["entry"].get("kind") == "step.intent"
               and e["entry"]["run"] == rid]
    assert intents == [], "no step intent: nothing was about to run"


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
