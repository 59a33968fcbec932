"""Commands about the queue as a whole: status, metrics, config."""

from __future__ import annotations

import click

from queuectl.commands.completion import config_keys
from queuectl.commands.group import Session, cli, filter_options, json_option
from queuectl.commands.results import ConfigView, MetricsReport, StatusReport
from queuectl.model.config import display_value, normalize_key, parse_setting, resolve_key


@cli.command()
@filter_options
@json_option
@click.pass_obj
def status(session: Session, group: str | None, tag: str | None) -> StatusReport:
    """Show job counts per state (and per group, when there are groups) and the live worker
    pools."""
    return StatusReport(session.queue().status(group=group, tag=tag))


@cli.command()
@filter_options
@json_option
@click.pass_obj
def metrics(session: Session, group: str | None, tag: str | None) -> MetricsReport:
    """Show throughput, runtimes and failure rate over the attempt history."""
    queue = session.queue()
    return MetricsReport(queue.metrics(group=group, tag=tag), queue.location)


@cli.group()
def config() -> None:
    """Read and change the queue's configuration (shared by all its workers)."""


@config.command("get")
@click.argument("key", required=False, shell_complete=config_keys)
@json_option
@click.pass_obj
def config_get(session: Session, key: str | None) -> ConfigView:
    """Show one key, or all of them."""
    if key is not None:
        resolve_key(key)  # refuse a bad key before the queue is even opened
    current = session.queue().config()
    if key is None:
        return ConfigView(current.as_dict())
    return ConfigView({normalize_key(key): display_value(key, current)}, single=True)


@config.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key", shell_complete=config_keys)
@click.argument("value")
@click.pass_obj
def config_set(session: Session, key: str, value: str) -> ConfigView:
    """Set KEY to VALUE, e.g. `config set max_retries 5` or `config set poll-interval-ms 50`."""
    parse_setting(key, value)  # refuse bad input before the queue (maybe a new one) is opened
    name, parsed = session.queue().set_config(key, value)
    return ConfigView({name: parsed})
