"""Figures (seaborn): training curves here; the report's figures join them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


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

HIGHER_IS_BETTER = {"arc": True, "openmath": False, "squad_v2": True}
EFFICACY_LABEL = {"arc": "ARC macro-F1 ↑", "openmath": "OpenMath mean |diff| ↓", "squad_v2": "SQuAD v2 F1 (%) ↑"}
TASK_ORDER = ["arc", "openmath", "squad_v2"]


def _ok(evals: pd.DataFrame) -> pd.DataFrame:
    frame = evals[evals["status"] == "ok"].copy()
    return frame


SCORE_LABEL = {"arc": "ARC macro-F1 ↑", "openmath": "OpenMath accuracy (%) ↑", "squad_v2": "SQuAD v2 F1 (%) ↑"}


def plot_pareto(configs: pd.DataFrame, *, cost: str = "latency_mean_s",
                cost_label: str = "latency per reply, batch 1 (s) ↓"):
    """Efficacy against a cost per task, one point per configuration (seeds averaged: the frame of
    ``comparisons.configurations``, efficacy as in the questions); the front is ringed and labelled."""
    from .stats import pareto_front

    frame = configs.dropna(subset=["score", cost]) if len(configs) else configs
    tasks = [t for t in TASK_ORDER if t in set(frame["task"])] if len(frame) else []
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5.2 * max(len(tasks), 1), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = frame[frame["task"] == task].copy()
        sub["pareto"] = pareto_front(sub, {"score": True, cost: False})
        sns.scatterplot(data=sub, x=cost, y="score", hue="method", style="block", s=70, ax=ax)
        front = sub[sub["pareto"]].sort_values(cost)
        ax.plot(front[cost], front["score"], color="black", lw=1, ls="--", zorder=0)
        ax.scatter(front[cost], front["score"], s=180, facecolors="none", edgecolors="black")
        for _, row in front.iterrows():
            ax.annotate(row["config"], (row[cost], row["score"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        ax.set(title=task, xlabel=cost_label, ylabel=SCORE_LABEL[task])
        if ax is not axes[0][-1] and ax.get_legend():
            ax.get_legend().remove()
    if tasks and axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1), fontsize=7)
    fig.tight_layout()
    return fig


def plot_rank(evals: pd.DataFrame):
    """Efficacy against adapter rank, one line per method and training task; with several seeds
    the line is their mean and the band their standard deviation."""
    frame = _ok(evals)
    frame = frame[frame["rank"].notna() & frame["method"].isin(["LoRA", "DoRA", "VeRA"])].copy()
    frame["rank"] = frame["rank"].astype(float)
    tasks = [t for t in TASK_ORDER if t in set(frame["task"])]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5 * max(len(tasks), 1), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = frame[frame["task"] == task]
        seeds = sub.groupby("config")["model"].nunique().max()
        sns.lineplot(data=sub, x="rank", y="efficacy", hue="method", style="train_task", marker="o", ax=ax,
                     errorbar="sd" if seeds > 1 else None, err_style="bars")
        ax.set(xscale="log", title=task + (f" (mean ± sd over up to {seeds} seeds)" if seeds > 1 else ""),
               xlabel="rank r", ylabel=EFFICACY_LABEL[task])
    fig.tight_layout()
    return fig


def plot_transfer(evals: pd.DataFrame):
    """Change of efficacy against the untuned base of the same base model, per method and
    train task (rows) and eval task (columns); signed so that positive is better."""
    frame = _ok(evals)
    base = frame[frame["block"] == "Base models"].set_index(["base", "task"])["efficacy"]
    trained = frame[frame["block"] != "Base models"].copy()
    if trained.empty or base.empty:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "needs trained models and their untuned base", ha="center", va="center")
        ax.axis("off")
        return fig
    ref = [base.get((b, t)) for b, t in zip(trained["base"], trained["task"])]
    sign = trained["task"].map(lambda t: 1 if HIGHER_IS_BETTER[t] else -1)
    trained["change"] = sign * (trained["efficacy"] - pd.Series(ref, index=trained.index, dtype=float))
    trained["row"] = trained["train_task"] + " · " + trained["model"].str.replace(r"^(openmath|squad_v2)-", "", regex=True)
    grid = trained.pivot_table(index="row", columns="task", values="change", aggfunc="mean")
    grid = grid[[t for t in TASK_ORDER if t in grid.columns]]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(grid) + 1.5))
    sns.heatmap(grid, annot=True, fmt=".3g", center=0, cmap="RdBu", ax=ax, cbar_kws={"label": "change (positive = better)"})
    ax.set(title="Change vs the untuned base (positive = better)", xlabel="eval task", ylabel="train task · method")
    fig.tight_layout()
    return fig


def plot_latency_split(evals: pd.DataFrame):
    """Latency = tokens generated × seconds per token: which factor makes a model slow."""
    frame = _ok(evals)
    frame = frame[frame["tokens_mean"].notna() & frame["s_per_token"].notna()]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * frame["model"].nunique() + 2.5))
    sns.barplot(data=frame, y="model", x="tokens_mean", hue="task", ax=axes[0])
    axes[0].set(title="tokens generated per reply (batch 1)", xlabel="tokens", ylabel="")
    sns.barplot(data=frame, y="model", x="s_per_token", hue="task", ax=axes[1])
    axes[1].set(title="seconds per generated token", xlabel="s/token", ylabel="")
    axes[1].get_legend().remove() if axes[1].get_legend() else None
    fig.tight_layout()
    return fig


def plot_parse_rates(evals: pd.DataFrame):
    """Share of replies with a parsable \\boxed{} answer, per model and task."""
    frame = _ok(evals)
    fig, ax = plt.subplots(figsize=(7, 0.3 * frame["model"].nunique() + 2))
    sns.barplot(data=frame, y="model", x="parse_rate", hue="task", ax=ax)
    ax.set(xlim=(0, 1), title="parse rate (answers in \\boxed{})", xlabel="share of replies", ylabel="")
    fig.tight_layout()
    return fig
