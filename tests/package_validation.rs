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
