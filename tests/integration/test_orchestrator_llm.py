#!/usr/bin/env python3
"""Integration: a chat agent (the LLM stand-in speaking the chat-completions
API) whose proposals go through the same decide/approve/lease path as
anything — and a prompt-injected model that executes nothing.

- "po" then "done": the model proposes write_po for the run's input
  ($5,000): allowed, one ERP row; the call's result goes back to the
  model as a `tool` message with its tool_call_id (the stand-in refuses a
  conversation without it, as the OpenAI API does), and its answer
  without tool calls ends the agent: the run COMPLETED after two turns;
- "injected": the model proposes write_po for $10,000,000 to an attacker
  and transfer_funds, a tool it was never given: transfer_funds is refused
  (node.finished outcome refused, a step.refused audit entry), the
  $10,000,000 write is denied by policy (REJECTED); nothing reaches the
  sandbox; both are in the audit log;
- a model that keeps asking for tools: at its turn limit (max_turns 2) the
  node fails with the reason, the calls of that turn not run;
- the conversation is in the checkpoint: a turn's call ($510,004) pauses
  for approval, the orchestrator is killed and restarted, the chain
  approves: the call runs once and its result reaches the model's second
  turn after the first turn's own answer.
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


LOOPER = json.loads(json.dumps(WORKFLOW))
LOOPER["workflow"] = "looper"
LOOPER["nodes"][0]["max_turns"] = 2


class Ctx(OrchCluster):
    def __init__(self):
        self.llm = Standin(["po", "done", "injected", "po", "po", "po", "done"]).start()
        super().__init__(orch_lines="llm_base_url = %s\nllm_model = standin\n" % self.llm.url,
                         workflows={"assistant.json": json.dumps(WORKFLOW), "looper.json": json.dumps(LOOPER)})

    def close(self):
        super().close()
        self.llm.stop()


@test
def proposal_runs_through_the_gate(x):
    rid = x.start_run(5000, workflow="assistant")
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "COMPLETED", v
    assert [(n["node"], n["attempt"]) for n in v["nodes"]] == [("assistant", 1), ("write_po", 1), ("assistant", 2),
                                                                ("done", 1)], v["nodes"]
    assert x.rows("chat") == [["Acme", 5000, "engineering"]], x.rows("chat")
    # the second turn gave the model its call's result, by the call's id
    assert len(x.llm.requests) == 2, len(x.llm.requests)
    first, second = (r["body"]["messages"] for r in x.llm.requests)
    assert [m["role"] for m in first] == ["system", "user"], first
    assert second[:2] == first and [m["role"] for m in second[2:]] == ["assistant", "tool"], second
    call = second[2]["tool_calls"][0]
    assert call["id"] == "call_standin_0" and call["function"]["name"] == "write_po", call
    assert json.loads(call["function"]["arguments"]) == {"vendor": "Acme", "amount": 5000, "cost_center": "engineering"}
    assert second[3]["tool_call_id"] == "call_standin_0", second[3]
    result = json.loads(second[3]["content"])
    assert result["updates"]["updatedRows"] == 1 and result["spreadsheetId"] == "chat", result


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


@test
def turn_limit_fails_the_node(x):
    before = len(x.llm.requests)
    rid = x.start_run(5000, workflow="looper")
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "FAILED", v
    assert "max_turns 2" in v["reason"] and "assistant" in v["reason"], v["reason"]
    agent = [n for n in v["nodes"] if n["node"] == "assistant"]
    assert [n.get("outcome") for n in agent] == ["ok", "failed"], agent
    assert agent[1]["error"]["code"] == "agent_turns", agent[1]
    assert len(x.llm.requests) - before == 2, len(x.llm.requests) - before
    # turn 1's call ran (a second row); turn 2's did not
    assert x.rows("chat") == [["Acme", 5000, "engineering"]] * 2, x.rows("chat")


@test
def conversation_survives_a_restart(x):
    before = len(x.llm.requests)
    rid = x.start_run(510004, workflow="assistant")
    v = x.wait_state(rid, ("PAUSED",))
    assert v["reason"] == "approval" and v["approval"]["node"] == "write_po", v
    x.kill("orchestrator")
    x.start_orch()
    x.approve("carol", rid)
    x.approve("victor", rid)
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    assert [(n["node"], n["attempt"]) for n in v["nodes"]] == [("assistant", 1), ("write_po", 1), ("assistant", 2),
                                                                ("done", 1)], v["nodes"]
    assert len(x.llm.requests) - before == 2, len(x.llm.requests) - before
    second = x.llm.requests[-1]["body"]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"], second
    args = json.loads(second[2]["tool_calls"][0]["function"]["arguments"])
    assert args["amount"] == 510004 and second[3]["tool_call_id"] == second[2]["tool_calls"][0]["id"], second
    assert json.loads(second[3]["content"])["updates"]["updatedRows"] == 1, second[3]
    assert [r for r in x.rows("chat") if r[1] == 510004] == [["Acme", 510004, "engineering"]], x.rows("chat")


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
