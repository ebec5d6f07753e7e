"""``hooktrain demo``: an MLP on scikit-learn's bundled digits (no download), end to end."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from hooktrain.args import TrainingArguments
from hooktrain.outputs import EvalPrediction
from hooktrain.trainer import Trainer, set_seed


class DigitsMLP(nn.Module):
    """64 pixels -> 10 digits, HF-style: returns ``{"loss", "logits"}``."""

    def __init__(self, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10),
        )

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.net(pixel_values)
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


class DigitsDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.tensor(images, dtype=torch.float32) / 16.0  # pixel values are 0..16
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.images[index], "labels": self.labels[index]}


def digits_splits(seed: int = 0) -> tuple[DigitsDataset, DigitsDataset]:
    """The 1,797 digits, split 80/20 (stratified) into train and held-out sets."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise SystemExit(
            "The demo needs scikit-learn: pip install 'hooktrain[demo]'"
        ) from exc
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )
    return DigitsDataset(x_train, y_train), DigitsDataset(x_test, y_test)


def accuracy(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def run(output_dir: str = "runs/digits", epochs: int = 8, report_to: Any = "all") -> float:
    """Train, print a table per epoch, and return the held-out accuracy."""
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    train_set, test_set = digits_splits()
    args = TrainingArguments(
        output_dir=output_dir, num_train_epochs=epochs, per_device_train_batch_size=32,
        per_device_eval_batch_size=256, learning_rate=3e-3, weight_decay=0.01,
        warmup_steps=0.05, eval_strategy="epoch", logging_strategy="epoch",
        save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model="accuracy", report_to=report_to, seed=0,
    )
    set_seed(args.seed)  # before the model is built: the Trainer seeds only after (as HF)
    trainer = Trainer(DigitsMLP(), args, train_dataset=train_set, eval_dataset=test_set,
                      compute_metrics=accuracy)
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    table = results_table(trainer.state.log_history)
    final = trainer.evaluate()  # the best checkpoint's weights, loaded at the end of training
    print(table)
    for plugin in trainer.callbacks:  # plugins that write files say where (TensorBoard, ...)
        if getattr(plugin, "log_dir", None):
            print(f"{type(plugin).__name__} logs: {plugin.log_dir}")
    print(f"Held-out accuracy {final['eval_accuracy']:.4f} on {len(test_set)} digits after "
          f"{trainer.state.global_step} steps in {elapsed:.1f} s; best checkpoint: "
          f"{trainer.state.best_model_checkpoint}")
    return final["eval_accuracy"]


def results_table(log_history: list[dict[str, Any]]) -> str:
    """One row per epoch: training loss, evaluation loss and accuracy."""
    rows: dict[float, dict[str, Any]] = {}
    for entry in log_history:
        if "train_runtime" in entry:
            continue
        row = rows.setdefault(entry["epoch"], {})
        row.update({k: v for k, v in entry.items() if k in ("loss", "eval_loss", "eval_accuracy")})
    lines = [f"{'epoch':>6} {'train loss':>11} {'eval loss':>10} {'accuracy':>9}"]
    for epoch, row in sorted(rows.items()):
        cells = [row.get(k) for k in ("loss", "eval_loss", "eval_accuracy")]
        text = [f"{c:.4f}" if isinstance(c, float) else "-" for c in cells]
        lines.append(f"{epoch:>6.1f} {text[0]:>11} {text[1]:>10} {text[2]:>9}")
    return "\n".join(lines)
