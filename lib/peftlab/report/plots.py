"""Figures (seaborn): training curves here; the report's figures join them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from peftlab.analysis.comparisons import MEASURES
from peftlab.analysis.study_records import ADAPTERS, BLOCK_ORDER, METHOD_LABELS, TASK_LABELS
from peftlab.core.stats import pareto_front
from peftlab.methods.registry import METHODS
from peftlab.tasks.registry import TASKS


def plot_loss_curve(record: dict):
    """Training loss per optimizer step."""
    curve = pd.DataFrame(record.get("loss_curve", []))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if curve.empty:
        ax.text(0.5, 0.5, "no loss logged (run failed?)", ha="center", va="center")
        return ax
    sns.lineplot(data=curve, x="step", y="loss", marker="o", ax=ax)
    ax.set(title=f"{record['run']}: training loss", xlabel="optimizer step", ylabel="loss")
    fig.tight_layout()
    return ax


# --- report figures: all read the `evals` frame of analysis.load_study ----------------

EFFICACY_LABEL = {name: task.presentation.efficacy_label for name, task in TASKS.items()}
TASK_ORDER = list(TASKS)


def _ok(evals: pd.DataFrame) -> pd.DataFrame:
    frame = evals[evals["status"] == "ok"].copy()
    return frame


# --- report figures on configurations (one row per configuration and task, seeds averaged) ---

METHOD_COLOURS = {**{method.label: method.colour for method in METHODS.values()}, "—": "#7f7f7f"}
BLOCK_MARKERS = dict(zip(BLOCK_ORDER, "os^vP*XD"[: len(BLOCK_ORDER) - 1] + "D"))


def _method_name(method: str) -> str:
    return "untuned" if method == "—" else method


def score_label(configs: pd.DataFrame, task: str) -> str:
    """The efficacy axis of ``task``: the measure's label and unit (e.g. 'SQuAD v2 F1 (%)')."""
    metrics = configs.loc[configs["task"] == task, "score_metric"].dropna().unique() if len(configs) else []
    if len(metrics) != 1 or metrics[0] not in MEASURES:
        return f"{task} efficacy"
    measure = MEASURES[metrics[0]]
    return f"{measure.label}" + (f" ({measure.unit})" if measure.unit else "")


def pareto_numbers(configs: pd.DataFrame) -> dict[str, int]:
    """Each configuration's number in the Pareto figure (the study's order, from 1)."""
    return {c: i + 1 for i, c in enumerate(dict.fromkeys(configs["config"]))} if len(configs) else {}


def plot_pareto(
    configs: pd.DataFrame,
    *,
    cost: str = "latency_mean_s",
    cost_label: str = "batch-1 latency per reply (s)",
    numbers: dict[str, int] | None = None,
):
    """Efficacy against a cost per task, one numbered point per configuration (the frame of
    ``comparisons.configurations``). Colour: method; marker: training block; ringed and joined
    by a dashed line: the Pareto front of the two axes. Numbers are placed clear of each other
    (adjustText) and keyed by ``pareto_numbers``."""
    from adjustText import adjust_text
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    numbers = numbers or pareto_numbers(configs)
    frame = configs.dropna(subset=["score", cost]) if len(configs) else configs
    tasks = [t for t in TASK_ORDER if t in set(frame["task"])] if len(frame) else []
    n = max(len(tasks), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = frame[frame["task"] == task].copy()
        sub["pareto"] = pareto_front(sub, {"score": True, cost: False})
        front = sub[sub["pareto"]].sort_values(cost)
        ax.plot(front[cost], front["score"], color="black", lw=0.8, ls="--", zorder=1, drawstyle="steps-post")
        ax.scatter(front[cost], front["score"], s=190, facecolors="none", edgecolors="black", lw=0.9, zorder=2)
        for _, row in sub.iterrows():
            ax.scatter(
                row[cost],
                row["score"],
                s=55,
                color=METHOD_COLOURS.get(row["method"], "#444"),
                marker=BLOCK_MARKERS.get(row["block"], "o"),
                edgecolors="white",
                lw=0.5,
                zorder=3,
            )
        texts = [
            ax.text(
                row[cost],
                row["score"],
                str(numbers.get(row["config"], "?")),
                fontsize=8,
                zorder=4,
                fontweight="bold" if row["pareto"] else "normal",
            )
            for _, row in sub.iterrows()
        ]
        ax.set_title(TASK_LABELS.get(task, task), fontsize=11)
        ax.set_xlabel(f"{cost_label}  ← better", fontsize=9)
        ax.set_ylabel(f"{score_label(configs, task)}  better →", fontsize=9)
        ax.grid(alpha=0.3)
        ax.margins(0.12)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.tick_params(labelsize=8)
        if texts:
            adjust_text(
                texts,
                ax=ax,
                x=list(sub[cost]),
                y=list(sub["score"]),
                expand=(1.6, 1.9),
                force_text=(0.6, 0.9),
                force_explode=(0.3, 0.6),
                explode_radius=30,
                time_lim=3,
                arrowprops=dict(arrowstyle="-", color="#888", lw=0.5),
            )
    if not tasks:
        axes[0][0].text(0.5, 0.5, "no configuration has both efficacy and this cost", ha="center", va="center")
        axes[0][0].axis("off")
    present = frame.drop_duplicates("config") if len(frame) else frame
    handles = [
        Line2D([], [], ls="", marker="o", color=METHOD_COLOURS.get(m, "#444"), label=_method_name(m))
        for m in METHOD_COLOURS
        if len(present) and m in set(present["method"])
    ]
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker=BLOCK_MARKERS[b],
            color="#555",
            mfc="white",
            label="untuned base" if b == "Base models" else b.replace("Trained", "trained"),
        )
        for b in BLOCK_MARKERS
        if len(present) and b in set(present["block"])
    ]
    handles.append(Line2D([], [], ls="--", marker="o", ms=11, mfc="none", color="black", label="Pareto front"))
    fig.legend(
        handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8.5, bbox_to_anchor=(0.5, 0.0)
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def transfer_matrix(configs: pd.DataFrame) -> pd.DataFrame:
    """Per trained configuration and evaluation task: its efficacy, the untuned base's, the change
    in the task's own unit and the relative change (NaN when the base scores 0)."""
    cfg = configs.dropna(subset=["score"]) if len(configs) else configs
    if cfg.empty:
        return pd.DataFrame(columns=["config", "task", "train_task", "score", "base_score", "change", "relative"])
    base = cfg[cfg["method_key"] == "base"].set_index(["base", "task"])["score"]
    trained = cfg[cfg["trained"].astype(bool)].copy()
    trained["base_score"] = [base.get((b, t), float("nan")) for b, t in zip(trained["base"], trained["task"])]
    trained = trained.dropna(subset=["base_score"])
    trained["change"] = trained["score"] - trained["base_score"]
    trained["relative"] = [c / b if b > 0 else float("nan") for c, b in zip(trained["change"], trained["base_score"])]
    return trained[["config", "task", "train_task", "score", "base_score", "change", "relative"]]


def plot_transfer(configs: pd.DataFrame, *, labels: dict[str, str] | None = None):
    """Efficacy change of every trained configuration (rows) on every evaluation task (columns)
    against the untuned model of the same base. Colour: relative change (%), comparable across
    tasks; text: the change in the task's own unit; outlined: the training task (in-domain)."""
    import numpy as np
    from matplotlib.patches import Rectangle

    matrix = transfer_matrix(configs)
    if matrix.empty:
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.text(0.5, 0.5, "needs trained configurations and their untuned base", ha="center", va="center")
        ax.axis("off")
        return fig
    labels = labels or {}
    rows = list(dict.fromkeys(matrix["config"]))
    tasks = [t for t in TASK_ORDER if t in set(matrix["task"])]
    rel = matrix.pivot_table(index="config", columns="task", values="relative", aggfunc="first", dropna=False)
    rel = rel.reindex(index=rows, columns=tasks) * 100
    change = matrix.pivot_table(index="config", columns="task", values="change", aggfunc="first").reindex(
        index=rows, columns=tasks
    )
    finite = np.abs(rel.to_numpy(dtype=float))
    finite = finite[np.isfinite(finite)]
    limit = max(10.0, float(np.quantile(finite, 0.95))) if finite.size else 100.0
    fig, ax = plt.subplots(figsize=(2.2 * len(tasks) + 3.8, 0.27 * len(rows) + 1.5))
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#e0e0e0")
    image = ax.imshow(
        np.ma.masked_invalid(rel.to_numpy(dtype=float)), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto"
    )
    train_task = matrix.drop_duplicates("config").set_index("config")["train_task"]
    for i, config in enumerate(rows):
        for j, task in enumerate(tasks):
            value = change.loc[config, task]
            if pd.isna(value):
                continue
            metric = configs.loc[configs["task"] == task, "score_metric"].dropna()
            digits = MEASURES[metric.iloc[0]].digits if len(metric) and metric.iloc[0] in MEASURES else 2
            r = rel.loc[config, task]
            dark = pd.notna(r) and abs(r) > 0.6 * limit
            ax.text(
                j, i, f"{value:+.{digits}f}", ha="center", va="center", fontsize=7.5, color="white" if dark else "black"
            )
            if train_task.get(config) == task:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.4, ec="black"))
    ax.set_xticks(range(len(tasks)), [f"{TASK_LABELS.get(t, t)}\n{score_label(configs, t)}" for t in tasks], fontsize=8)
    ax.set_yticks(range(len(rows)), [labels.get(c, c) for c in rows], fontsize=8)
    ax.tick_params(top=False, bottom=True, labeltop=False, labelbottom=True)
    ax.set_xlabel("evaluation task (cell text: change in the task's own unit)", fontsize=9)
    ax.set_ylabel("trained configuration", fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("relative change vs the untuned base (%)\nblue = better, red = worse", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def plot_rank(evals: pd.DataFrame):
    """Efficacy against adapter rank, one line per method and training task; with several seeds
    the line is their mean and the band their standard deviation."""
    frame = _ok(evals)
    frame = frame[frame["rank"].notna() & frame["method"].isin([METHOD_LABELS[m] for m in ADAPTERS])].copy()
    frame["rank"] = frame["rank"].astype(float)
    tasks = [t for t in TASK_ORDER if t in set(frame["task"])]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5 * max(len(tasks), 1), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = frame[frame["task"] == task]
        seeds = sub.groupby("config")["model"].nunique().max()
        sns.lineplot(
            data=sub,
            x="rank",
            y="efficacy",
            hue="method",
            style="train_task",
            marker="o",
            ax=ax,
            errorbar="sd" if seeds > 1 else None,
            err_style="bars",
        )
        ax.set(
            xscale="log",
            title=TASK_LABELS.get(task, task) + (f" (mean ± sd, up to {seeds} seeds)" if seeds > 1 else ""),
            xlabel="adapter rank r (log scale)",
            ylabel=EFFICACY_LABEL[task],
        )
    _one_legend(fig, axes[0], {"method": "method", "train_task": "trained on"})
    return fig


def _one_legend(fig, axes, titles: dict[str, str]):
    """One legend below the panels instead of one per panel (seaborn's section titles renamed)."""
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for handle, label in zip(h, lab):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
        if ax.get_legend():
            ax.get_legend().remove()
    labels = [titles.get(lab, TASK_LABELS.get(lab, lab)) for lab in labels]
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(len(handles), 9),
            frameon=False,
            fontsize=8,
            bbox_to_anchor=(0.5, 0.0),
        )
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))


def plot_latency_split(evals: pd.DataFrame):
    """Latency = tokens generated × seconds per token: which factor makes a model slow."""
    frame = _ok(evals)
    frame = frame[frame["tokens_mean"].notna() & frame["s_per_token"].notna()]
    frame = frame.assign(task=frame["task"].map(lambda t: TASK_LABELS.get(t, t)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * frame["model"].nunique() + 1.6), sharey=True)
    sns.barplot(data=frame, y="model", x="tokens_mean", hue="task", ax=axes[0])
    axes[0].set(title="tokens generated per reply (batch 1)", xlabel="tokens per reply", ylabel="")
    sns.barplot(data=frame, y="model", x="s_per_token", hue="task", ax=axes[1])
    axes[1].set(title="seconds per generated token", xlabel="seconds per token", ylabel="")
    for ax in axes:
        ax.tick_params(axis="y", labelsize=8)
    _one_legend(fig, axes, {})
    return fig


def plot_parse_rates(evals: pd.DataFrame):
    """Share of replies with a parsable \\boxed{} answer, per model and task."""
    frame = _ok(evals)
    frame = frame.assign(
        task=frame["task"].map(lambda t: TASK_LABELS.get(t, t)),
        parse_pct=100 * pd.to_numeric(frame["parse_rate"], errors="coerce"),
    )
    fig, ax = plt.subplots(figsize=(8, 0.32 * frame["model"].nunique() + 1.6))
    sns.barplot(data=frame, y="model", x="parse_pct", hue="task", ax=ax)
    ax.set(xlim=(0, 100), title="replies with an answer in \\boxed{}", xlabel="parsed replies (%)", ylabel="")
    ax.tick_params(axis="y", labelsize=8)
    _one_legend(fig, [ax], {})
    return fig
