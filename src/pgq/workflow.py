"""Workflows: jobs that wait for other jobs, composed as chains and groups.

``chain(a, b, c)`` runs ``b`` after ``a`` and ``c`` after ``b``;
``group([a, b]).then(c)`` runs ``a`` and ``b`` side by side and ``c`` once both
completed. Steps are :class:`~pgq.JobSpec`\\ s, chains or groups, nested freely:
``chain(fetch, group([resize, scan]), publish)`` is a diamond. A workflow is a
description only; ``app.enqueue_workflow(wf)`` inserts it, in one transaction,
as jobs with ``depends_on`` (see docs/workflows.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from pgq.errors import InvalidJob
from pgq.job import JobSpec

Step = Union[JobSpec, "Chain", "Group"]

#: Jobs in one workflow; larger fan-outs are better enqueued in parts.
MAX_NODES = 10_000


@dataclass(frozen=True)
class Chain:
    """Steps run one after another: each starts when the previous one completed."""

    steps: tuple[Step, ...]

    def then(self, step: Step) -> Chain:
        return Chain((*self.steps, step))


@dataclass(frozen=True)
class Group:
    """Steps run side by side; what follows a group waits for all of them."""

    steps: tuple[Step, ...]

    def then(self, step: Step) -> Chain:
        return Chain((self, step))


def chain(*steps: Step) -> Chain:
    """``chain(a, b, c)``: ``b`` waits for ``a``, ``c`` for ``b``."""
    return Chain(_checked(steps, "chain"))


def group(steps: Iterable[Step]) -> Group:
    """``group([a, b, c])``: run side by side; ``.then(d)`` waits for all three."""
    if isinstance(steps, JobSpec | Chain | Group):
        raise InvalidJob("group() takes a list of steps: group([a, b]), not group(a, b)")
    return Group(_checked(tuple(steps), "group"))


def _checked(steps: Sequence[Any], kind: str) -> tuple[Step, ...]:
    if not steps:
        raise InvalidJob(f"a {kind} needs at least one step")
    for index, step in enumerate(steps):
        if not isinstance(step, JobSpec | Chain | Group):
            raise InvalidJob(
                f"step {index} of the {kind} is {step!r}: steps are pgq.JobSpec "
                "(for example my_task.spec(x=1)), chain(...) or group([...])"
            )
    return tuple(steps)


@dataclass(frozen=True)
class Node:
    """One job of a flattened workflow: its spec, and the nodes it waits for."""

    spec: JobSpec
    parents: tuple[int, ...]
    depth: int


def flatten(workflow: Step) -> list[Node]:
    """The workflow's jobs in order of appearance, each after all of its parents."""
    if not isinstance(workflow, JobSpec | Chain | Group):
        raise InvalidJob(f"enqueue_workflow takes chain(...), group([...]) or a JobSpec, got {workflow!r}")
    nodes: list[Node] = []

    def walk(step: Step, parents: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(step, JobSpec):
            if len(nodes) >= MAX_NODES:
                raise InvalidJob(f"a workflow holds at most {MAX_NODES} jobs; enqueue it in parts")
            depth = 1 + max((nodes[p].depth for p in parents), default=-1)
            nodes.append(Node(step, parents, depth))
            return (len(nodes) - 1,)
        if isinstance(step, Chain):
            for inner in step.steps:
                parents = walk(inner, parents)
            return parents
        exits: list[int] = []
        for inner in step.steps:
            exits.extend(walk(inner, parents))
        return tuple(exits)

    walk(workflow, ())
    return nodes


def with_placeholder_parents(node: Node) -> JobSpec:
    """The node's spec as it is checked before insertion: a node with parents in the
    workflow is checked as a job with parents (its ids are known only once they exist)."""
    if node.parents and not node.spec.depends_on:
        return dataclasses.replace(node.spec, depends_on=[1])
    return node.spec
