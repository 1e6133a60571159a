//! Loading a package fails early with a message that names the file and the mismatch.

mod common;

use std::path::Path;

use common::*;
use vidflow::package::Package;
use vidflow::runtime::{Device, RuntimeOptions};

/// Copies the tiny package into a temporary folder and lets the test edit its manifest.
fn edited_copy(edit: impl FnOnce(&mut serde_yaml::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&tiny_dir(), tmp.path());
    let path = tmp.path().join("model.yaml");
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "golden" {
                copy_dir(&entry.path(), &dest);
            }
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn open_err(dir: &Path) -> String {
    match Package::open(dir, &options()) {
        Ok(_) => panic!("opening {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_shipped_package_opens() {
    let pkg = open_tiny();
    assert_eq!(pkg.layers.len(), pkg.manifest.num_layers);
    assert!(
        pkg.manifest.num_kv_heads < pkg.manifest.num_heads,
        "the test package must exercise GQA"
    );
    for l in 0..pkg.num_layers() {
        pkg.layer_attn(l).expect("attention variant validates");
    }
}

#[test]
fn unknown_manifest_field_is_named() {
    let tmp = edited_copy(|d| {
        d["hiden_size"] = 64.into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml") && msg.contains("hiden_size"),
        "{msg}"
    );
}

#[test]
fn hidden_size_mismatch_names_the_graph_and_the_field() {
    let tmp = edited_copy(|d| {
        let h = d["hidden_size"].as_u64().unwrap();
        d["hidden_size"] = (h + 8).into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains(".onnx") && msg.contains("hidden_size"),
        "{msg}"
    );
}

#[test]
fn layer_count_mismatch_is_reported() {
    let tmp = edited_copy(|d| {
        let n = d["num_layers"].as_u64().unwrap();
        d["num_layers"] = (n + 1).into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("graphs.layers") && msg.contains("num_layers"),
        "{msg}"
    );
}

#[test]
fn kv_head_mismatch_names_the_layer_graph() {
    let tmp = edited_copy(|d| {
        d["num_kv_heads"] = d["num_heads"].clone();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("layer_00.onnx") && msg.contains("num_kv_heads"),
        "{msg}"
    );
}

#[test]
fn missing_graph_file_is_named() {
    let tmp = edited_copy(|_| {});
    let m: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(tmp.path().join("model.yaml")).unwrap())
            .unwrap();
    let rope = m["graphs"]["rope"].as_str().unwrap().to_string();
    std::fs::remove_file(tmp.path().join(&rope)).unwrap();
    let msg = open_err(tmp.path());
    assert!(msg.contains(&rope) && msg.contains("not found"), "{msg}");
}

#[test]
fn graph_swapped_for_another_is_rejected() {
    // The embed graph in place of the rope graph: wrong input name.
    let tmp = edited_copy(|d| {
        let embed = d["graphs"]["embed"].clone();
        d["graphs"]["rope"] = embed;
    });
    let msg = open_err(tmp.path());
    assert!(msg.contains("position_ids"), "{msg}");
}

#[test]
fn gpu_device_without_a_gpu_build_is_an_error_not_a_fallback() {
    for device in [Device::Cuda, Device::TensorRt] {
        let opts = RuntimeOptions {
            device,
            ..options()
        };
        let msg = match Package::open(&tiny_dir(), &opts) {
            Ok(_) => panic!("{device} must not silently run on the CPU build"),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.contains(&device.to_string()) && msg.contains("onnxruntime-gpu"),
            "{msg}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The deep check at open: the tokenizer loads and the prompt renders and tokenizes; the numbers
// of the manifest that no graph checks.

/// Copies the tiny package and overwrites one of its files with `bytes`.
fn copy_with_file(rel: &str, bytes: &[u8]) -> tempfile::TempDir {
    let tmp = edited_copy(|_| {});
    std::fs::write(tmp.path().join(rel), bytes).unwrap();
    tmp
}

#[test]
fn truncated_tokenizer_json_is_refused_at_open() {
    let full = std::fs::read(tiny_dir().join("tokenizer.json")).unwrap();
    let tmp = copy_with_file("tokenizer.json", &full[..full.len() / 2]);
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("tokenizer.json") && msg.contains("cannot load as a HF tokenizer.json"),
        "{msg}"
    );
}

#[test]
fn tokenizer_json_that_is_not_a_tokenizer_is_refused_at_open() {
    let tmp = copy_with_file("tokenizer.json", b"{\"version\": \"1.0\"}");
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("tokenizer.json") && msg.contains("cannot load as a HF tokenizer.json"),
        "{msg}"
    );
}

#[test]
fn video_placeholder_that_is_not_one_token_is_refused() {
    let tmp = edited_copy(|d| {
        d["prompt"]["video_placeholder"] = "<vid>".into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml")
            && msg.contains("tokenizer.json")
            && msg.contains("video placeholder \"<vid>\"")
            && msg.contains("expected exactly one token with video_token_id 3"),
        "{msg}"
    );
}

#[test]
fn video_token_id_that_is_not_the_placeholder_is_refused() {
    // 4 is `<image>`: inside the vocabulary, but not the token `<video>` encodes to.
    let tmp = edited_copy(|d| {
        d["special_tokens"]["video_token_id"] = 4.into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("video placeholder \"<video>\" tokenizes to ids [3]")
            && msg.contains("video_token_id 4"),
        "{msg}"
    );
}

#[test]
fn repeated_option_labels_are_refused() {
    let tmp = edited_copy(|d| {
        d["prompt"]["option_labels"] = serde_yaml::from_str("[A, A, B]").unwrap();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml")
            && msg.contains("prompt.option_labels repeats \"A\" (entries 0 and 1)"),
        "{msg}"
    );
}

#[test]
fn option_label_of_more_than_one_token_is_refused() {
    let tmp = edited_copy(|d| {
        d["prompt"]["option_labels"] = serde_yaml::from_str("[A, B, XYZ, D]").unwrap();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml")
            && msg.contains(
                "prompt.option_labels[2] \"XYZ\" is not one token after the answer prefix"
            )
            && msg.contains("every label must encode to exactly one token"),
        "{msg}"
    );
}

#[test]
fn zero_image_std_is_refused() {
    let tmp = edited_copy(|d| {
        d["video"]["image_std"][1] = 0.0.into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml")
            && msg.contains("video.image_std[1] is 0; every entry must be finite and > 0"),
        "{msg}"
    );
}

#[test]
fn negative_or_infinite_image_std_is_refused() {
    for (value, shown) in [(-0.5, "-0.5"), (f64::INFINITY, "inf")] {
        let tmp = edited_copy(|d| {
            d["video"]["image_std"][2] = value.into();
        });
        let msg = open_err(tmp.path());
        assert!(
            msg.contains(&format!("video.image_std[2] is {shown};")),
            "{msg}"
        );
    }
}

#[test]
fn non_finite_image_mean_is_refused() {
    let tmp = edited_copy(|d| {
        d["video"]["image_mean"][0] = f64::NAN.into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("video.image_mean[0] is NaN; every entry must be finite"),
        "{msg}"
    );
}

#[test]
fn zero_or_negative_rescale_factor_is_refused() {
    for (value, shown) in [(0.0, "0"), (-1.0, "-1")] {
        let tmp = edited_copy(|d| {
            d["video"]["rescale_factor"] = value.into();
        });
        let msg = open_err(tmp.path());
        assert!(
            msg.contains(&format!(
                "video.rescale_factor is {shown}; it must be finite and > 0"
            )),
            "{msg}"
        );
    }
}

#[test]
fn zero_video_sizes_are_refused() {
    for field in [
        "num_frames",
        "frame_height",
        "frame_width",
        "grid_h",
        "grid_w",
    ] {
        let tmp = edited_copy(|d| {
            d["video"][field] = 0.into();
        });
        let msg = open_err(tmp.path());
        assert!(
            msg.contains("model.yaml")
                && msg.contains(&format!("video.{field} is 0; it must be > 0")),
            "{field}: {msg}"
        );
    }
}

#[test]
fn special_token_ids_outside_the_vocabulary_are_refused() {
    for field in [
        "video_token_id",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ] {
        let tmp = edited_copy(|d| {
            let v = d["vocab_size"].as_u64().unwrap();
            d["special_tokens"][field] = v.into();
        });
        let msg = open_err(tmp.path());
        assert!(
            msg.contains("model.yaml")
                && msg.contains(&format!(
                    "special_tokens.{field} is 633, outside the vocabulary: ids must be 0 to 632 \
                     (vocab_size 633)"
                )),
            "{field}: {msg}"
        );
    }
    let tmp = edited_copy(|d| {
        d["special_tokens"]["bos_token_id"] = (-1).into();
    });
    let msg = open_err(tmp.path());
    assert!(msg.contains("special_tokens.bos_token_id is -1"), "{msg}");
}

#[test]
fn tokenizer_larger_than_the_vocabulary_is_refused() {
    let tmp = edited_copy(|d| {
        d["vocab_size"] = 600.into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("tokenizer.json")
            && msg.contains("has 633 tokens, but the manifest's vocab_size is 600"),
        "{msg}"
    );
}

#[test]
fn missing_max_positions_is_named() {
    let tmp = edited_copy(|d| {
        d.as_mapping_mut().unwrap().remove("max_positions");
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml") && msg.contains("missing field `max_positions`"),
        "{msg}"
    );
}

#[test]
fn max_positions_too_small_for_any_prompt_is_refused() {
    let tmp = edited_copy(|d| {
        d["max_positions"] = 100.into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml")
            && msg.contains("max_positions is 100, but the shortest prompt")
            && msg.contains("64 video tokens) is already 132 positions"),
        "{msg}"
    );
}

#[test]
fn the_deep_check_reports_what_it_verified() {
    let pkg = open_tiny();
    let c = &pkg.prompt_check;
    assert_eq!(c.tokenizer_size, pkg.manifest.vocab_size);
    assert_eq!(
        c.option_token_ids.len(),
        pkg.manifest.prompt.option_labels.len()
    );
    assert!(c.minimal_seq_len < c.sample_seq_len);
    assert!(c.sample_seq_len <= pkg.manifest.max_positions);
    // The builder the deep check verified gives the same answer tokens as a fresh one.
    let layout = pkg
        .prompt_builder()
        .layout("What is it?", &["a cat", "a dog"], Some(0))
        .unwrap();
    assert_eq!(layout.option_token_ids, c.option_token_ids[..2]);
    pkg.check_sequence_length(layout.seq_len).unwrap();
    let msg = pkg.check_sequence_length(513).unwrap_err().to_string();
    assert!(
        msg.contains("the prompt is 513 tokens; tiny-llava-next-video takes at most 512 positions"),
        "{msg}"
    );
}

#[test]
fn info_prints_max_positions_and_the_deep_check() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .arg("info")
        .arg(tiny_dir())
        .args(["--threads", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("at most 512 per sequence"), "{stdout}");
    assert!(
        stdout.contains("deep check   tokenizer.json loads: 633 tokens, within vocab_size 633"),
        "{stdout}"
    );
    assert!(
        stdout.contains("labels ABCDEFGH are 8 distinct single tokens after \"Best option:(\""),
        "{stdout}"
    );
}

#[test]
fn a_bfloat16_package_on_the_cpu_is_refused_with_the_way_out() {
    let tmp = edited_copy(|d| {
        d["dtype"] = "bfloat16".into();
    });
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("model.yaml") && msg.contains("bfloat16") && msg.contains("--device cuda"),
        "{msg}"
    );
}
