//! Layer sets as pathway configs write them, in the paper's numbering: 1-based inclusive ranges
//! (`"6-15"`), single layers (`7` or `"7"`), lists and comma-separated strings of both, and `all`.

use serde_yaml::Value;

/// The 1-based layers named by one `blocked:` / `except:` value, checked against `num_layers`.
/// Errors are plain messages; the caller adds the file and the rule.
pub(crate) fn parse_layer_set(value: &Value, num_layers: usize) -> Result<Vec<bool>, String> {
    let mut set = vec![false; num_layers];
    add_value(value, num_layers, &mut set)?;
    Ok(set)
}

fn add_value(value: &Value, num_layers: usize, set: &mut [bool]) -> Result<(), String> {
    match value {
        Value::Number(n) => {
            let layer = n
                .as_u64()
                .ok_or_else(|| format!("layer {n} is not a positive whole number"))?;
            add_range(layer, layer, num_layers, set)
        }
        Value::String(s) => {
            for part in s.split(',').map(str::trim) {
                add_item(part, num_layers, set)?;
            }
            Ok(())
        }
        Value::Sequence(items) if !items.is_empty() => items
            .iter()
            .try_for_each(|item| match item {
                Value::Sequence(_) => Err("layer lists cannot be nested".to_string()),
                other => add_value(other, num_layers, set),
            }),
        Value::Sequence(_) => Err("the layer list is empty; write `all`, a range like \"6-15\", or a list".into()),
        other => Err(format!(
            "cannot read {} as layers: expected `all`, a layer like 7, a range like \"6-15\", or a list of those",
            serde_yaml::to_string(other).unwrap_or_default().trim()
        )),
    }
}

fn add_item(item: &str, num_layers: usize, set: &mut [bool]) -> Result<(), String> {
    let number = |s: &str| -> Result<u64, String> {
        s.trim().parse::<u64>().map_err(|_| {
            format!(
                "cannot read {item:?} as layers: expected `all`, a layer like 7, or a range FIRST-LAST like \"6-15\""
            )
        })
    };
    if item == "all" {
        return add_range(1, num_layers as u64, num_layers, set);
    }
    match item.split_once('-') {
        Some((a, b)) => {
            let (first, last) = (number(a)?, number(b)?);
            if first > last {
                return Err(format!(
                    "layer range {item:?} runs backwards: expected FIRST-LAST with FIRST <= LAST"
                ));
            }
            add_range(first, last, num_layers, set)
        }
        None => {
            let layer = number(item)?;
            add_range(layer, layer, num_layers, set)
        }
    }
}

fn add_range(first: u64, last: u64, num_layers: usize, set: &mut [bool]) -> Result<(), String> {
    if first == 0 {
        return Err("layer 0 does not exist: layers are numbered from 1, as in the paper".into());
    }
    if last > num_layers as u64 {
        return Err(format!(
            "layer {last} is beyond the model's {num_layers} layers (num_layers: {num_layers})"
        ));
    }
    for l in first..=last {
        set[l as usize - 1] = true;
    }
    Ok(())
}

/// Writes a layer set back in config notation (`"1-5, 16-32"`), for reports.
pub fn format_layer_set(set: &[bool]) -> String {
    let mut parts = Vec::new();
    let mut l = 0;
    while l < set.len() {
        if !set[l] {
            l += 1;
            continue;
        }
        let start = l;
        while l + 1 < set.len() && set[l + 1] {
            l += 1;
        }
        parts.push(if start == l {
            format!("{}", start + 1)
        } else {
            format!("{}-{}", start + 1, l + 1)
        });
        l += 1;
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Maps a per-layer set written for `set.len()` layers onto `num_layers` layers: target layer t
/// takes the value of the source layer that contains t's centre, `floor((t + 1/2) * L / M)`
/// (0-based). Every target layer gets exactly one source layer, so ranges keep their relative
/// place in the stack and `all` stays `all`.
pub fn scale_layer_set(set: &[bool], num_layers: usize) -> Vec<bool> {
    let from = set.len();
    (0..num_layers)
        .map(|t| set[((2 * t + 1) * from) / (2 * num_layers)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, n: usize) -> Result<Vec<bool>, String> {
        parse_layer_set(&serde_yaml::from_str(yaml).unwrap(), n)
    }

    fn layers(set: &[bool]) -> Vec<usize> {
        (0..set.len()).filter(|&l| set[l]).map(|l| l + 1).collect()
    }

    #[test]
    fn forms_of_layer_sets() {
        assert_eq!(layers(&parse("\"6-8\"", 10).unwrap()), vec![6, 7, 8]);
        assert_eq!(layers(&parse("all", 3).unwrap()), vec![1, 2, 3]);
        assert_eq!(layers(&parse("4", 5).unwrap()), vec![4]);
        assert_eq!(
            layers(&parse("[1, \"3-4\", \"6\"]", 6).unwrap()),
            vec![1, 3, 4, 6]
        );
        assert_eq!(layers(&parse("\"1-2, 5\"", 6).unwrap()), vec![1, 2, 5]);
    }

    #[test]
    fn bad_layer_sets_are_explained() {
        assert!(parse("\"15-6\"", 32)
            .unwrap_err()
            .contains("runs backwards"));
        assert!(parse("\"0-3\"", 32)
            .unwrap_err()
            .contains("numbered from 1"));
        assert!(parse("\"30-33\"", 32)
            .unwrap_err()
            .contains("beyond the model's 32 layers"));
        assert!(parse("\"6..15\"", 32)
            .unwrap_err()
            .contains("cannot read \"6..15\""));
        assert!(parse("[]", 32).unwrap_err().contains("empty"));
    }

    #[test]
    fn formatting_merges_runs() {
        let mut s = vec![false; 10];
        for l in [0, 1, 2, 5, 8, 9] {
            s[l] = true;
        }
        assert_eq!(format_layer_set(&s), "1-3, 6, 9-10");
        assert_eq!(format_layer_set(&[false; 3]), "none");
    }

    #[test]
    fn scaling_maps_layer_centres() {
        // 32 -> 4: target centres 0.125, 0.375, 0.625, 0.875 fall in source layers 5, 13, 21, 29.
        let mut s = vec![false; 32];
        s[12] = true; // layer 13
        assert_eq!(layers(&scale_layer_set(&s, 4)), vec![2]);
        assert_eq!(scale_layer_set(&[true; 32], 30), vec![true; 30]);
        assert_eq!(scale_layer_set(&s, 32), s);
    }
}
