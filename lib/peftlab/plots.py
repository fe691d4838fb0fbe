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
