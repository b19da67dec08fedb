//! The validation loss, as instructlab-training 0.14.2 to 0.16.2 log it with
//! `--validation_split`: every `--validation_frequency` steps, after the step's metrics, rank 0
//! logs `base_logger.info("Validation loss: %.6f", …)` and then the dict `{"val_loss": …,
//! "val_num_tokens": …}` through the metric logger (`%.3f`, `%.2e` below 0.001). The genuine
//! runs had no validation split, so the lines are made from their genuine Rich lines (512
//! columns, `COLUMNS=512` as the operator sets it) with the message InstructLab prints.

use finetune_operator::logs::progress::{Record, inspect};

fn genuine() -> String {
    let path = format!(
        "{}/tests/fixtures/instructlab/realrun/train-0.16.log",
        env!("CARGO_MANIFEST_DIR")
    );
    String::from_utf8(std::fs::read(path).unwrap()).unwrap()
}

/// A genuine Rich line of `main_ds.py` holding `old`, with `message` in its place: the time
/// and level columns, the padding to 512 columns and the source column as they were.
fn rich_line(log: &str, old: &str, message: &str) -> String {
    let line = log
        .split(['\n', '\r'])
        .find(|l| l.contains(old) && l.contains("main_ds.py:"))
        .unwrap_or_else(|| panic!("no line with {old}"));
    assert_eq!(line.len(), 512);
    let at = line.find(old).unwrap();
    let source = line.rfind("main_ds.py:").unwrap();
    // The message and the padding after it, less the two spaces before the source column.
    let width = source - at - 2;
    assert!(message.len() <= width, "{message}");
    format!("{}{message:<width$}  {}", &line[..at], &line[source..])
}

#[test]
fn the_validation_loss_is_read_from_both_lines_and_kept_precise() {
    let log = genuine();
    // The log up to the last step of the first epoch, then a validation.
    assert_eq!(
        rich_line(&log, "Number of samples per save: 96", "x").len(),
        512
    );
    let step = log
        .find("epoch=0, step=20,")
        .expect("the first epoch's last step");
    let head = &log[..step + log[step..].find('\n').unwrap() + 1];
    let validation = [
        rich_line(
            &log,
            "Number of samples per save: 96",
            "Validation loss: 5.123456",
        ),
        rich_line(
            &log,
            "Number of samples per save: 96",
            "val_loss=5.123, val_num_tokens=2170",
        ),
    ]
    .join("\n");
    let text = format!("{head}{validation}\n");

    let inspection = inspect(text.as_bytes(), Some(2));
    let p = inspection.progress.unwrap();
    assert_eq!(p.validation_loss, Some(5.123456));
    assert_eq!(
        (p.epoch, p.step),
        (Some(1), Some(20)),
        "the step is unchanged"
    );

    // Each line is a record of its own.
    let mut parser = finetune_operator::logs::progress::ProgressParser::new();
    let mut records = parser.feed(validation.as_bytes());
    records.extend(parser.finish());
    assert_eq!(
        records,
        [
            Record::ValidationLoss { loss: 5.123456 },
            Record::ValidationLoss { loss: 5.123 }
        ]
    );

    // A later validation replaces it; `%.2e` is read as well.
    let later = rich_line(
        &log,
        "Number of samples per save: 96",
        "val_loss=9.87e-04, val_num_tokens=2170",
    );
    let inspection = inspect(format!("{text}{later}\n").as_bytes(), Some(2));
    assert_eq!(inspection.progress.unwrap().validation_loss, Some(9.87e-4));
}
