"""How separated are a trained energy's eight modes? The energy barrier along the ring of the means.

For each of the eight gaps between neighbouring modes of the quality benchmark's target, the highest energy on the arc
of the means' circle between them minus the energy at the mode where the arc starts, averaged over the gaps (nats).
The target's own energy has 4.18; a model that learned a ring instead of eight modes has a few tenths.

    python benchmarks/ring_barrier.py cd:7:1e-3 cd:7:3e-3 sm:8:1e-3     # method:seed:learning rate
"""
import math, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as Q

def ring_barrier(energy, n_per_arc=100):
    "Mean over the eight arcs between neighbouring modes of max(E on the arc) - E(at the arc's first mode)."
    r = Q.target().means[0].norm()
    a = torch.linspace(0, 2 * math.pi, 8 * n_per_arc + 1)[:-1]
    pts = torch.stack([r * torch.cos(a), r * torch.sin(a)], 1)
    with torch.no_grad(): e = energy(pts).reshape(8, n_per_arc)
    return float((e.max(1).values - e[:, 0]).mean())

if __name__ == "__main__":
    torch.set_num_threads(1)
    for spec in sys.argv[1:]:
        m, s, lr = spec.split(":")
        model, _ = Q.train(m, seed=int(s), lr=float(lr))
        print(f"{Q.LABELS[m]}, seed {s}, Adam {float(lr):g}: grid KL {Q.evaluate(m, model)['kl']:.3f}, "
              f"barrier {ring_barrier(model):.2f} nats (reference {ring_barrier(Q.reference_density(m)):.2f})", flush=True)
