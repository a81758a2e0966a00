"""Times the official ImageEncoderViT forward (vit_b by default) on CPU with 2 threads."""
import sys
import time
from functools import partial

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from torch_encoder_common import official_encoder_class

name = sys.argv[1] if len(sys.argv) > 1 else "vit_b"
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
cfg = {"vit_b": (768, 12, 12, [2, 5, 8, 11]), "vit_l": (1024, 24, 16, [5, 11, 17, 23]),
       "vit_h": (1280, 32, 16, [7, 15, 23, 31])}[name]
torch.set_num_threads(threads)
torch.manual_seed(0)
E = official_encoder_class()
enc = E(depth=cfg[1], embed_dim=cfg[0], img_size=1024, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg[2], patch_size=16,
        qkv_bias=True, use_rel_pos=True, global_attn_indexes=cfg[3], window_size=14,
        out_chans=256).eval()
x = torch.randn(1, 3, 1024, 1024)
with torch.no_grad():
    enc(x)
    ts = []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        enc(x)
        ts.append((time.perf_counter() - t, time.process_time() - c))
        print(f"torch {name} forward: wall {ts[-1][0]:.3f} s, cpu {ts[-1][1]:.3f} s", flush=True)
ts.sort()
w, c = ts[len(ts) // 2]
print(f"torch {name} threads={threads} median: wall {w:.3f} s, cpu {c:.3f} s ({reps} runs)")
