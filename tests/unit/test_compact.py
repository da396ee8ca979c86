"""Compaction of the task tree with spec-less storage: long loops, joins, timers, subprocesses, N-of-M.

Every scenario stores the workflow the way the runtime does after each step: compact, serialize the
state without the spec, and restore it onto specs that went through their own JSON round trip.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine import clock
from engine.bpmn.compact import compact
from engine.bpmn.parser import EmflowParser
from engine.bpmn.scripting import ScriptEngine
from engine.bpmn.serializer import specs_from_json, specs_to_json, state_from_json, state_to_json
from engine.bpmn.specs import AggregateParallelMI, AggregateSequentialMI

NAMESPACES = ('xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
              'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
              'id="defs" targetNamespace="https://emflow.example/test"')


def definitions(body: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions {NAMESPACES}>{body}</bpmn:definitions>'.encode()


class Store:
    """Specs through JSON once (as at deploy), the instance state through JSON after every step."""

    def __init__(self, process_id: str, *documents: bytes, compacting: bool = True):
        parser = EmflowParser()
        for i, document in enumerate(documents):
            parser.add_bpmn_bytes(document, f"doc{i}.bpmn")
        self.spec, self.subprocess_specs = specs_from_json(
            specs_to_json(parser.get_spec(process_id), parser.get_subprocess_specs(process_id)))
        self.compacting = compacting
        self.sizes: list[int] = []

    def start(self, **data) -> BpmnWorkflow:
        wf = BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=ScriptEngine())
        wf.get_next_task(state=TaskState.READY).set_data(**data)
        wf.do_engine_steps()
        return self.save_and_load(wf)

    def save_and_load(self, wf: BpmnWorkflow) -> BpmnWorkflow:
        if not self.compacting:
            return wf
        compact(wf)
        text = state_to_json(wf)
        self.sizes.append(len(text))
        restored = state_from_json(text, self.spec, self.subprocess_specs)
        restored.script_engine = ScriptEngine()
        return restored


def ready(wf) -> list[str]:
    return sorted(t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.READY, manual=True))


def complete(wf, bpmn_id: str, **data) -> None:
    [task] = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == bpmn_id]
    task.set_data(**data)
    task.run()
    wf.do_engine_steps()


# -- a loop of returns -------------------------------------------------------------------------------

LOOP = definitions("""
  <bpmn:process id="returns" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="init"/>
    <bpmn:scriptTask id="init"><bpmn:script>rounds = 0</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f1" sourceRef="init" targetRef="merge"/>
    <bpmn:exclusiveGateway id="merge"/>
    <bpmn:sequenceFlow id="f2" sourceRef="merge" targetRef="revise"/>
    <bpmn:userTask id="revise" name="Revise"/>
    <bpmn:sequenceFlow id="f3" sourceRef="revise" targetRef="count"/>
    <bpmn:scriptTask id="count"><bpmn:script>rounds += 1</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f4" sourceRef="count" targetRef="check"/>
    <bpmn:exclusiveGateway id="check" default="back"/>
    <bpmn:sequenceFlow id="done" sourceRef="check" targetRef="end">
      <bpmn:conditionExpression>rounds &gt;= wanted</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="back" sourceRef="check" targetRef="merge"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>""")


def run_returns(store: Store, wanted: int) -> tuple[BpmnWorkflow, int]:
    wf = store.start(wanted=wanted)
    completed = 0
    while ready(wf) == ["revise"]:
        complete(wf, "revise", note=f"round {completed}")
        completed += 1
        wf = store.save_and_load(wf)
    return wf, completed


def test_600_returns_complete_with_compaction():
    store = Store("returns", LOOP)
    wf, completed = run_returns(store, 600)
    assert completed == 600
    assert wf.is_completed()
    assert wf.data["rounds"] == 600


def test_state_stays_a_few_kilobytes_over_600_returns():
    store = Store("returns", LOOP)
    run_returns(store, 600)
    assert max(store.sizes) < 5 * 1024
    assert store.sizes[-2] <= store.sizes[10] + 64  # no growth with the number of rounds


def test_without_compaction_spiffworkflow_silently_stops_a_long_loop():
    """Documents the library limit compaction exists for: the task iterator's depth limit of 1,000 ends
    the loop early and the workflow claims to be complete, although the end event was never reached."""
    wf, completed = run_returns(Store("returns", LOOP, compacting=False), 600)
    assert completed < 600
    assert wf.is_completed()
    assert "rounds" not in wf.data


def test_compact_leaves_nothing_to_do_on_a_fresh_workflow():
    wf = BpmnWorkflow(Store("returns", LOOP).spec, script_engine=ScriptEngine())
    assert compact(wf) == 0


# -- a parallel split and join with a timer on one branch ---------------------------------------------

def parallel(interrupting: bool) -> bytes:
    timer_target = "merge_a" if interrupting else "end_reminded"
    return definitions(f"""
  <bpmn:process id="parallel" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="split"/>
    <bpmn:parallelGateway id="split"/>
    <bpmn:sequenceFlow id="fa" sourceRef="split" targetRef="a"/>
    <bpmn:sequenceFlow id="fb" sourceRef="split" targetRef="b"/>
    <bpmn:userTask id="a" name="Branch A"/>
    <bpmn:userTask id="b" name="Branch B"/>
    <bpmn:boundaryEvent id="a_late" attachedToRef="a" cancelActivity="{str(interrupting).lower()}">
      <bpmn:timerEventDefinition><bpmn:timeDuration>"PT1H"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="ft" sourceRef="a_late" targetRef="on_late"/>
    <bpmn:scriptTask id="on_late"><bpmn:script>late = True</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="ft2" sourceRef="on_late" targetRef="{timer_target}"/>
    <bpmn:endEvent id="end_reminded"/>
    <bpmn:sequenceFlow id="fa2" sourceRef="a" targetRef="merge_a"/>
    <bpmn:exclusiveGateway id="merge_a"/>
    <bpmn:sequenceFlow id="fa3" sourceRef="merge_a" targetRef="join"/>
    <bpmn:sequenceFlow id="fb2" sourceRef="b" targetRef="join"/>
    <bpmn:parallelGateway id="join"/>
    <bpmn:sequenceFlow id="fj" sourceRef="join" targetRef="after"/>
    <bpmn:scriptTask id="after"><bpmn:script>joined = True</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="fe" sourceRef="after" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>""")


def play(store: Store, steps: list[str]) -> tuple[BpmnWorkflow, list]:
    """Run the steps ('a', 'b' complete a task; 'timer' moves the clock past the deadline)."""
    clock.reset()
    wf = store.start()
    seen = [ready(wf)]
    for step in steps:
        if step == "timer":
            clock.advance(timedelta(hours=2))
            wf.refresh_timers()
            wf.do_engine_steps()
        elif step in ready(wf):
            complete(wf, step, **{f"{step}_done": True})
        wf = store.save_and_load(wf)
        seen.append(ready(wf))
    return wf, seen


ORDERS = [["b", "a"], ["a", "b"], ["b", "timer", "a"], ["timer", "b", "a"], ["a", "timer", "b"]]


@pytest.mark.parametrize("interrupting", [False, True], ids=["reminder", "escalation"])
@pytest.mark.parametrize("steps", ORDERS, ids="-".join)
def test_parallel_join_with_a_timer_matches_the_uncompacted_run(interrupting, steps):
    reference, expected = play(Store("parallel", parallel(interrupting), compacting=False), steps)
    wf, seen = play(Store("parallel", parallel(interrupting)), steps)
    assert seen == expected
    assert wf.is_completed() and reference.is_completed()
    assert wf.data == reference.data
    assert wf.data["joined"] is True


def test_an_interrupting_timer_cancels_its_branch_and_the_join_still_fires():
    wf, seen = play(Store("parallel", parallel(True)), ["b", "timer"])
    assert seen == [["a", "b"], ["a"], []]
    assert wf.is_completed()
    assert wf.data == {"b_done": True, "late": True, "joined": True}


def test_a_reminder_timer_keeps_its_branch_open_until_completed():
    wf, seen = play(Store("parallel", parallel(False)), ["timer", "b", "a"])
    assert seen == [["a", "b"], ["a", "b"], ["a"], []]
    assert wf.data == {"late": True, "b_done": True, "a_done": True, "joined": True}


REPEATED_SPLIT = definitions("""
  <bpmn:process id="rounds" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="again"/>
    <bpmn:exclusiveGateway id="again"/>
    <bpmn:sequenceFlow id="f1" sourceRef="again" targetRef="split"/>
    <bpmn:parallelGateway id="split"/>
    <bpmn:sequenceFlow id="fa" sourceRef="split" targetRef="a"/>
    <bpmn:sequenceFlow id="fb" sourceRef="split" targetRef="b"/>
    <bpmn:userTask id="a"/>
    <bpmn:userTask id="b"/>
    <bpmn:sequenceFlow id="fa2" sourceRef="a" targetRef="join"/>
    <bpmn:sequenceFlow id="fb2" sourceRef="b" targetRef="join"/>
    <bpmn:parallelGateway id="join"/>
    <bpmn:sequenceFlow id="fj" sourceRef="join" targetRef="decide"/>
    <bpmn:userTask id="decide"/>
    <bpmn:sequenceFlow id="fd" sourceRef="decide" targetRef="gw"/>
    <bpmn:exclusiveGateway id="gw" default="fend"/>
    <bpmn:sequenceFlow id="fback" sourceRef="gw" targetRef="again">
      <bpmn:conditionExpression>redo</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="fend" sourceRef="gw" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>""")


def test_a_join_inside_a_loop_waits_for_both_branches_of_each_round():
    store = Store("rounds", REPEATED_SPLIT)
    wf = store.start()
    for i in range(30):
        first, second = ("a", "b") if i % 2 else ("b", "a")
        complete(wf, first)
        wf = store.save_and_load(wf)
        assert ready(wf) == [second]
        complete(wf, second)
        wf = store.save_and_load(wf)
        assert ready(wf) == ["decide"]
        complete(wf, "decide", redo=i < 29)
        wf = store.save_and_load(wf)
    assert wf.is_completed()
    assert store.sizes[-2] <= store.sizes[6] + 64


# -- a call activity and an embedded subprocess --------------------------------------------------------

PARENT = definitions("""
  <bpmn:process id="parent" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="prepare"/>
    <bpmn:subProcess id="prepare" name="Prepare">
      <bpmn:startEvent id="sp_start"/>
      <bpmn:sequenceFlow id="sf0" sourceRef="sp_start" targetRef="fill_in"/>
      <bpmn:userTask id="fill_in" name="Fill in"/>
      <bpmn:sequenceFlow id="sf1" sourceRef="fill_in" targetRef="sp_end"/>
      <bpmn:endEvent id="sp_end"/>
    </bpmn:subProcess>
    <bpmn:sequenceFlow id="f1" sourceRef="prepare" targetRef="call"/>
    <bpmn:callActivity id="call" name="Child approval" calledElement="child"/>
    <bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="final"/>
    <bpmn:userTask id="final" name="Final"/>
    <bpmn:sequenceFlow id="f3" sourceRef="final" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>""")

CHILD = definitions("""
  <bpmn:process id="child" isExecutable="true">
    <bpmn:startEvent id="c_start"/>
    <bpmn:sequenceFlow id="c0" sourceRef="c_start" targetRef="c_init"/>
    <bpmn:scriptTask id="c_init"><bpmn:script>approvals = 0</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="c1" sourceRef="c_init" targetRef="c_merge"/>
    <bpmn:exclusiveGateway id="c_merge"/>
    <bpmn:sequenceFlow id="c2" sourceRef="c_merge" targetRef="approve"/>
    <bpmn:userTask id="approve" name="Approve"/>
    <bpmn:sequenceFlow id="c3" sourceRef="approve" targetRef="c_count"/>
    <bpmn:scriptTask id="c_count"><bpmn:script>approvals += 1</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="c4" sourceRef="c_count" targetRef="c_check"/>
    <bpmn:exclusiveGateway id="c_check" default="c_back"/>
    <bpmn:sequenceFlow id="c_done" sourceRef="c_check" targetRef="c_end">
      <bpmn:conditionExpression>approvals &gt;= wanted</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="c_back" sourceRef="c_check" targetRef="c_merge"/>
    <bpmn:endEvent id="c_end"/>
  </bpmn:process>""")


def test_call_activity_and_subprocess_run_through_with_compaction():
    store = Store("parent", PARENT, CHILD)
    assert set(store.subprocess_specs) == {"prepare", "child"}
    wf = store.start(wanted=3)
    done = []
    while not wf.is_completed():
        [bpmn_id] = ready(wf)
        complete(wf, bpmn_id, **({"filled": True} if bpmn_id == "fill_in" else {}))
        done.append(bpmn_id)
        wf = store.save_and_load(wf)
    assert done == ["fill_in", "approve", "approve", "approve", "final"]
    assert wf.data["filled"] is True and wf.data["approvals"] == 3


def test_a_long_loop_inside_a_call_activity_stays_small():
    store = Store("parent", PARENT, CHILD)
    wf = store.start(wanted=300)
    complete(wf, "fill_in")
    wf = store.save_and_load(wf)
    tasks_inside = []
    for _ in range(300):
        [task] = wf.get_tasks(state=TaskState.READY, manual=True)
        assert task.task_spec.bpmn_id == "approve" and task.workflow is not wf
        tasks_inside.append(len(task.workflow.tasks))
        complete(wf, "approve")
        wf = store.save_and_load(wf)
    [final] = wf.get_tasks(state=TaskState.READY, manual=True)
    assert final.task_spec.bpmn_id == "final" and final.data["approvals"] == 300
    assert max(tasks_inside) == tasks_inside[5]
    assert max(store.sizes) < 16 * 1024


# -- N-of-M multi-instance ------------------------------------------------------------------------------

def sign_off(sequential: bool) -> bytes:
    return definitions(f"""
  <bpmn:process id="sign_off" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="sign"/>
    <bpmn:userTask id="sign" name="Sign">
      <bpmn:multiInstanceLoopCharacteristics isSequential="{str(sequential).lower()}">
        <bpmn:loopDataInputRef>approvers</bpmn:loopDataInputRef>
        <bpmn:loopDataOutputRef>decisions</bpmn:loopDataOutputRef>
        <bpmn:inputDataItem id="approver" name="approver"/>
        <bpmn:outputDataItem id="decision" name="decision"/>
        <bpmn:completionCondition>len([d for d in decisions if d == 'approve']) &gt;= 2</bpmn:completionCondition>
      </bpmn:multiInstanceLoopCharacteristics>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f1" sourceRef="sign" targetRef="tally"/>
    <bpmn:scriptTask id="tally">
      <bpmn:script>approvals = len([d for d in decisions if d == 'approve'])</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="tally" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>""")


def vote(store: Store, votes: list[tuple[str, str]]) -> tuple[BpmnWorkflow, list[list[str]]]:
    wf = store.start(approvers=["alice", "bob", "carol"])
    waiting = [sorted(t.data["approver"] for t in wf.get_tasks(state=TaskState.READY, manual=True))]
    for who, decision in votes:
        [task] = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.data["approver"] == who]
        task.data["decision"] = decision
        task.run()
        wf.do_engine_steps()
        wf = store.save_and_load(wf)
        waiting.append(sorted(t.data["approver"] for t in wf.get_tasks(state=TaskState.READY, manual=True)))
    return wf, waiting


def test_the_parser_plugs_in_the_aggregate_multi_instance_classes():
    assert isinstance(Store("sign_off", sign_off(False)).spec.task_specs["sign"], AggregateParallelMI)
    assert isinstance(Store("sign_off", sign_off(True)).spec.task_specs["sign"], AggregateSequentialMI)


def test_two_of_three_finishes_after_two_approvals():
    wf, waiting = vote(Store("sign_off", sign_off(False)), [("alice", "approve"), ("carol", "approve")])
    assert waiting == [["alice", "bob", "carol"], ["bob", "carol"], []]
    assert wf.is_completed()
    assert wf.data["decisions"] == ["approve", "approve"] and wf.data["approvals"] == 2


def test_two_of_three_waits_past_a_rejection():
    wf, waiting = vote(Store("sign_off", sign_off(False)),
                       [("bob", "reject"), ("alice", "approve"), ("carol", "approve")])
    assert waiting == [["alice", "bob", "carol"], ["alice", "carol"], ["carol"], []]
    assert wf.is_completed() and wf.data["approvals"] == 2


def test_two_of_three_ends_when_everyone_has_voted_without_enough_approvals():
    wf, _ = vote(Store("sign_off", sign_off(False)), [("bob", "reject"), ("alice", "approve"), ("carol", "reject")])
    assert wf.is_completed()
    assert sorted(wf.data["decisions"]) == ["approve", "reject", "reject"] and wf.data["approvals"] == 1


def test_two_of_three_sequential_stops_after_two_approvals():
    wf, waiting = vote(Store("sign_off", sign_off(True)), [("alice", "approve"), ("bob", "approve")])
    assert waiting == [["alice"], ["bob"], []]
    assert wf.is_completed() and wf.data["decisions"] == ["approve", "approve"]


def test_a_long_sequential_multi_instance_keeps_no_finished_instances():
    approvers = [f"user{i}" for i in range(300)]
    store = Store("sign_off", sign_off(True).replace(b"&gt;= 2", b"&gt;= 1000"))
    wf = store.start(approvers=approvers)
    for expected in approvers:
        [task] = wf.get_tasks(state=TaskState.READY, manual=True)
        assert task.data["approver"] == expected
        task.data["decision"] = "approve"
        task.run()
        wf.do_engine_steps()
        wf = store.save_and_load(wf)
    assert wf.is_completed() and wf.data["decisions"] == ["approve"] * 300 and wf.data["approvals"] == 300
    # what remains grows by the decisions and SpiffWorkflow's list of merged instance ids (about 50 bytes
    # a step), not by the finished instances themselves (about 400 bytes a step)
    assert store.sizes[250] - store.sizes[50] < 200 * 80
