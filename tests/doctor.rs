//! `vidflow doctor` on this machine's CPU build of ONNX Runtime: the CPU is ready, CUDA is not and
//! the report says how to get it, `--json` is stable, and `--require cuda` fails.

mod common;

use std::process::{Command, Output};

use common::repo_path;

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .arg("doctor")
        .args(args)
        .current_dir(repo_path(""))
        // The library other commands would load here: the CPU build in .ort/lib/.
        .env_remove("VIDFLOW_ORT_LIB")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_text_report_shows_the_cpu_build_and_how_to_get_cuda() {
    let o = doctor(&[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("libonnxruntime.so"), "{out}");
    assert!(out.contains("version     1.31.1"), "{out}");
    assert!(out.contains("CPUExecutionProvider"), "{out}");
    assert!(
        out.contains("libcudart.so.13") && out.contains("libnvinfer.so.10"),
        "{out}"
    );
    assert!(out.contains("cpu       ready"), "{out}");
    assert!(out.contains("cuda      not ready"), "{out}");
    assert!(out.contains("pip install onnxruntime-gpu==1.31.1"), "{out}");
}

#[test]
fn the_json_report_has_fixed_fields_and_verdicts() {
    let o = doctor(&["--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("doctor --json is JSON");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    // serde_json's map is sorted here; the order on stdout is the struct's, checked below.
    assert_eq!(
        keys,
        [
            "devices",
            "gpu",
            "ld_library_path",
            "libraries",
            "onnxruntime"
        ]
    );
    let order: Vec<usize> = ["\"onnxruntime\"", "\"libraries\"", "\"gpu\"", "\"devices\""]
        .iter()
        .map(|k| out.find(k).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    let ort = &v["onnxruntime"];
    assert_eq!(ort["version"], "1.31.1");
    let providers: Vec<&str> = ort["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(providers.contains(&"CPUExecutionProvider"), "{providers:?}");
    assert!(
        !providers.contains(&"CUDAExecutionProvider"),
        "{providers:?}"
    );
    let libs = v["libraries"].as_array().unwrap();
    let sonames: Vec<&str> = libs.iter().map(|l| l["soname"].as_str().unwrap()).collect();
    for s in [
        "libcudart.so.13",
        "libcublas.so.13",
        "libcublasLt.so.13",
        "libcudnn.so.9",
        "libcurand.so.10",
        "libcufft.so.12",
        "libnvinfer.so.10",
        "libnvinfer_plugin.so.10",
        "libnvonnxparser.so.10",
    ] {
        assert!(sonames.contains(&s), "{s} in {sonames:?}");
    }
    let devices = v["devices"].as_array().unwrap();
    let names: Vec<&str> = devices
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "cuda", "tensorrt"]);
    assert_eq!(devices[0]["ready"], true);
    assert_eq!(devices[1]["ready"], false);
    let fixes: Vec<&str> = devices[1]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["fix"].as_str().unwrap())
        .collect();
    assert!(fixes[0].contains("onnxruntime-gpu==1.31.1"), "{fixes:?}");
    assert!(fixes[0].contains("VIDFLOW_ORT_LIB"), "{fixes:?}");
}

#[test]
fn require_cuda_fails_naming_what_is_missing_and_require_cpu_passes() {
    let o = doctor(&["--require", "cuda"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("cuda is not ready"), "{err}");
    assert!(err.contains("CUDAExecutionProvider"), "{err}");
    let o = doctor(&["--require", "cpu", "--json"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = doctor(&["--require", "gpu"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("unknown device `gpu`"));
}
