//! The InstructLab rank-0 log parser against the fixtures in tests/fixtures/instructlab (what
//! each format yields, chunking, cold starts, a run resumed after a crash) and against arbitrary
//! bytes (no panic, bounded memory).

use finetune_operator::api::{Checkpoint, CheckpointKind};
use finetune_operator::logs::progress::{
    FoldContext, LogState, LossKey, MAX_LINE_BYTES, MAX_MESSAGE_BYTES, MetricsFormat,
    ProgressParser, RankLoss, Record, ResumePoint, Setup, Transition, fold, inspect,
};
use testkit::random::{Rng, chunks};

const FIXTURES: [&str; 5] = [
    "v0.7.log",
    "v0.11.log",
    "v0.11-wrapped.log",
    "v0.12.log",
    "v0.12-resumed.log",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/instructlab/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Equal records; NaN losses (which `==` never finds equal) compare by their text.
fn same(a: &[Record], b: &[Record]) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn parse(bytes: &[u8]) -> Vec<Record> {
    let mut parser = ProgressParser::new();
    let mut records = parser.feed(bytes);
    records.extend(parser.finish());
    records
}

/// Feeds `bytes` in chunks of random sizes up to `max_chunk`, checking the retained memory.
fn parse_chunked(
    mut parser: ProgressParser,
    bytes: &[u8],
    rng: &mut Rng,
    max_chunk: usize,
) -> Vec<Record> {
    let mut records = Vec::new();
    for chunk in chunks(bytes, rng, max_chunk) {
        records.extend(parser.feed(chunk));
        assert!(
            parser.retained_bytes() <= RETAINED_BOUND,
            "{}",
            parser.retained_bytes()
        );
    }
    records.extend(parser.finish());
    records
}

/// What a parser may hold between chunks: the unfinished line and its ANSI-free copy, an open
/// Rich message, two paths of saves under way, each at most twice its cap (vectors double).
const RETAINED_BOUND: usize = 2 * (3 * MAX_LINE_BYTES + MAX_MESSAGE_BYTES) + 4096;

fn spec() -> FoldContext {
    FoldContext {
        total_epochs: Some(3),
        now: None,
    }
}

fn checkpoint(kind: CheckpointKind, path: &str, epoch: i64, samples: i64) -> Checkpoint {
    Checkpoint {
        path: format!("/output/granite-ft/{path}"),
        epoch: Some(epoch),
        samples: Some(samples),
        kind,
        time: None,
    }
}

/// HF and full-state checkpoints at the end of each epoch, with the samples seen then.
fn epoch_end_checkpoints(samples: [i64; 3]) -> Vec<Checkpoint> {
    samples
        .iter()
        .zip(1..)
        .flat_map(|(&s, epoch)| {
            [
                checkpoint(
                    CheckpointKind::Hf,
                    &format!("hf_format/samples_{s}"),
                    epoch,
                    s,
                ),
                checkpoint(
                    CheckpointKind::FullState,
                    &format!("full_state/epoch_{}", epoch - 1),
                    epoch,
                    s,
                ),
            ]
        })
        .collect()
}

fn epochs_completed(transitions: &[Transition]) -> Vec<(i64, f64, i64)> {
    transitions
        .iter()
        .filter_map(|t| match t {
            Transition::EpochCompleted {
                epoch,
                loss: Some(loss),
                samples_seen: Some(samples),
                ..
            } => Some((*epoch, *loss, *samples)),
            _ => None,
        })
        .collect()
}

fn count(records: &[Record], kind: fn(&Record) -> bool) -> usize {
    records.iter().filter(|r| kind(r)).count()
}

#[test]
fn v0_7_json_blocks() {
    let log = fixture("v0.7.log");
    let records = parse(&log);
    assert_eq!(
        count(
            &records,
            |r| matches!(r, Record::Step(s) if s.format == MetricsFormat::JsonBlock)
        ),
        36
    );
    assert_eq!(
        count(&records, |r| matches!(r, Record::RankLoss(_))),
        36 * 4
    );
    let setups: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r, Record::Setup(_)))
        .collect();
    assert_eq!(
        setups,
        [
            &Record::Setup(Setup {
                num_epochs: Some(3),
                ..Setup::default()
            }),
            &Record::Setup(Setup {
                num_epochs: None,
                steps_per_epoch: Some(12),
                total_samples: Some(1530)
            }),
        ]
    );
    // Glued behind a tqdm bar and another rank's print.
    assert!(records.contains(&Record::RankLoss(RankLoss {
        epoch: 0,
        step: 1,
        rank: 1,
        loss: Some(2.51953125)
    })));

    // Without the spec, the epochs come from script_params.
    let inspection = inspect(&log, None);
    assert_eq!(
        inspection.format,
        Some("v0.5-v0.10: JSON blocks, total_loss")
    );
    let p = inspection.progress.expect("progress");
    assert_eq!(
        (p.epoch, p.total_epochs, p.epoch_text.as_deref()),
        (Some(3), Some(3), Some("3/3"))
    );
    assert_eq!((p.step, p.total_steps), (Some(36), Some(36)));
    assert_eq!((p.samples_seen, p.total_samples), (Some(4535), Some(1530)));
    assert_eq!(p.percent, Some(100));
    assert_eq!(
        (p.loss, p.throughput),
        (Some(0.2492860056489022), Some(47.5848097224961))
    );
    // "Model saved in /models/granite-7b-base requires conversion" is not one of them.
    assert_eq!(
        inspection.checkpoints,
        epoch_end_checkpoints([1512, 3024, 4535])
    );
    assert_eq!(
        epochs_completed(&inspection.transitions),
        [
            (1, 1.1344075632797581, 1512),
            (2, 0.5177181496281628, 3024),
            (3, 0.2492860056489022, 4535)
        ]
    );
    assert_eq!(inspection.resumed_from, None);
}

#[test]
fn v0_11_key_values() {
    let records = parse(&fixture("v0.11.log"));
    let steps = count(
        &records,
        |r| matches!(r, Record::Step(s) if s.format == MetricsFormat::KeyValue && s.loss_key == Some(LossKey::TotalLoss)),
    );
    assert_eq!(steps, 24);
    // v0.11 prints each rank's loss as a tensor.
    let Some(Record::RankLoss(first)) = records.iter().find(|r| matches!(r, Record::RankLoss(_)))
    else {
        panic!("no rank line");
    };
    assert_eq!((first.epoch, first.step, first.rank), (0, 1, 0));
    assert!(first.loss.is_some_and(|l| l > 4.0));
    assert_eq!(count(&records, |r| matches!(r, Record::RankLoss(_))), 48);

    let inspection = inspect(&fixture("v0.11.log"), Some(3));
    assert_eq!(inspection.format, Some("v0.11: key=value, total_loss"));
    let p = inspection.progress.expect("progress");
    assert_eq!(
        (p.epoch_text.as_deref(), p.step, p.total_steps),
        (Some("3/3"), Some(24), Some(24))
    );
    assert_eq!(
        (p.samples_seen, p.total_samples, p.percent),
        (Some(2991), Some(1012), Some(100))
    );
    assert_eq!((p.loss, p.throughput), (Some(0.503), Some(54.596)));
    assert_eq!(
        inspection.checkpoints,
        epoch_end_checkpoints([993, 1988, 2991])
    );
    assert_eq!(
        epochs_completed(&inspection.transitions),
        [(1, 1.494, 993), (2, 0.861, 1988), (3, 0.503, 2991)]
    );
}

#[test]
fn v0_11_wrapped_at_80_columns_reads_like_unwrapped() {
    // The same run, printed without COLUMNS: Rich wraps every line at 80 columns.
    assert_eq!(
        parse(&fixture("v0.11-wrapped.log")),
        parse(&fixture("v0.11.log"))
    );
}

#[test]
fn v0_12_avg_loss_and_rank_lines() {
    let log = fixture("v0.12.log");
    let records = parse(&log);
    // Every rank logs its line through Rich; rank 1's line of step 4 landed inside rank 0's
    // 10,000-byte metrics line (a write over PIPE_BUF) and is lost, rank 0's metrics are not.
    assert_eq!(count(&records, |r| matches!(r, Record::RankLoss(_))), 47);
    assert_eq!(
        count(
            &records,
            |r| matches!(r, Record::Step(s) if s.loss_key == Some(LossKey::AvgLoss))
        ),
        24
    );
    // The setup record was glued behind 16 KiB of a tqdm line by the container runtime.
    assert!(records.contains(&Record::Setup(Setup {
        num_epochs: None,
        steps_per_epoch: Some(8),
        total_samples: Some(1012)
    })));
    assert!(records.contains(&Record::RankLoss(RankLoss {
        epoch: 2,
        step: 24,
        rank: 1,
        loss: Some(0.507553)
    })));

    let inspection = inspect(&log, Some(3));
    assert_eq!(inspection.format, Some("v0.12+: key=value, avg_loss"));
    let p = inspection.progress.expect("progress");
    assert_eq!(
        (p.epoch_text.as_deref(), p.step, p.total_steps),
        (Some("3/3"), Some(24), Some(24))
    );
    assert_eq!((p.samples_seen, p.percent), (Some(2986), Some(100)));
    assert_eq!((p.loss, p.throughput), (Some(0.508), Some(51.56)));
    assert_eq!(
        inspection.checkpoints,
        epoch_end_checkpoints([992, 1987, 2986])
    );
    assert_eq!(
        epochs_completed(&inspection.transitions),
        [(1, 1.504, 992), (2, 0.874, 1987), (3, 0.508, 2986)]
    );
}

#[test]
fn v0_12_resumed_run_continues_the_crashed_runs_status() {
    // The first container crashed at step 12 (epoch 2 of 3) after saving epoch 1's state.
    let first = parse(&fixture("v0.12.log"));
    let crash = first
        .iter()
        .position(|r| matches!(r, Record::Step(s) if s.step == 12))
        .expect("step 12");
    let before = fold(&LogState::default(), &first[..=crash], &spec());
    let p = before.state.progress.as_ref().expect("progress");
    assert_eq!(
        (p.epoch_text.as_deref(), p.step, p.percent),
        (Some("2/3"), Some(12), Some(50))
    );

    // The restarted container loads full_state/epoch_0 and counts steps from 1 again.
    let second = parse(&fixture("v0.12-resumed.log"));
    assert!(second.contains(&Record::Resumed(ResumePoint {
        path: Some("/output/granite-ft/full_state/epoch_0".into()),
        epoch: 0,
        samples: Some(992),
        global_step: None,
    })));
    let after = fold(&before.state, &second, &spec());
    let p = after.state.progress.as_ref().expect("progress");
    assert_eq!(
        (p.epoch_text.as_deref(), p.step, p.total_steps),
        (Some("3/3"), Some(24), Some(24))
    );
    assert_eq!(
        (p.samples_seen, p.percent, p.loss),
        (Some(2986), Some(100), Some(0.518))
    );
    let resumed_from = checkpoint(CheckpointKind::FullState, "full_state/epoch_0", 1, 992);
    assert_eq!(after.state.resumed_from.as_ref(), Some(&resumed_from));
    assert_eq!(
        after.state.checkpoints,
        epoch_end_checkpoints([992, 1987, 2986])
    );
    assert_eq!(
        after.transitions[0],
        Transition::ResumedFromCheckpoint {
            checkpoint: resumed_from
        }
    );
    assert_eq!(
        epochs_completed(&after.transitions),
        [(2, 0.868, 1987), (3, 0.518, 2986)]
    );
    let saved = count_saved(&after.transitions);
    assert_eq!(saved, 4);

    // Read alone (the operator restarted too), the resumed log still tells the whole story.
    let alone = inspect(&fixture("v0.12-resumed.log"), Some(3));
    assert_eq!(alone.progress, after.state.progress);
    assert_eq!(alone.resumed_from, after.state.resumed_from);
}

fn count_saved(transitions: &[Transition]) -> usize {
    transitions
        .iter()
        .filter(|t| matches!(t, Transition::CheckpointSaved { .. }))
        .count()
}

#[test]
fn any_chunking_gives_the_same_records() {
    let mut rng = Rng(0x5eed_0001);
    for name in FIXTURES {
        let log = fixture(name);
        let whole = parse(&log);
        let mut max_chunks = vec![7, 300, 5000, 70_000];
        if log.len() < 200_000 {
            max_chunks.push(2);
        }
        for max_chunk in max_chunks {
            let chunked = parse_chunked(ProgressParser::new(), &log, &mut rng, max_chunk);
            assert!(
                same(&chunked, &whole),
                "{name}: chunks up to {max_chunk} bytes differ"
            );
        }
    }
}

#[test]
fn folding_chunk_by_chunk_equals_inspecting_the_whole_log() {
    let mut rng = Rng(0x5eed_0002);
    for name in FIXTURES {
        let log = fixture(name);
        let mut parser = ProgressParser::new();
        let mut state = LogState::default();
        let mut transitions = Vec::new();
        let mut rest = log.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((1 + rng.below(20_000)).min(rest.len()));
            let folded = fold(&state, &parser.feed(chunk), &spec());
            state = folded.state;
            transitions.extend(folded.transitions);
            rest = tail;
        }
        let folded = fold(&state, &parser.finish(), &spec());
        transitions.extend(folded.transitions);
        let whole = inspect(&log, Some(3));
        assert_eq!(folded.state.progress, whole.progress, "{name}");
        assert_eq!(folded.state.checkpoints, whole.checkpoints, "{name}");
        assert_eq!(transitions, whole.transitions, "{name}");
    }
}

#[test]
fn a_cold_start_agrees_with_the_whole_log_after_its_first_record() {
    let mut rng = Rng(0x5eed_0003);
    for name in FIXTURES {
        let log = fixture(name);
        let whole = parse(&log);
        for _ in 0..12 {
            let offset = rng.below(log.len());
            let cold = parse_chunked(ProgressParser::cold(), &log[offset..], &mut rng, 50_000);
            // The first record may be a save or resume whose first marker came before the cut.
            let agreed = cold.get(1..).unwrap_or_default();
            assert!(
                whole.ends_with(agreed) && cold.len() <= whole.len(),
                "{name} from byte {offset}: {:?}",
                cold.first()
            );
        }
    }
}

/// Pieces arbitrary logs are made of: the formats' own tokens, their hazards, and garbage.
const PIECES: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\x1b[92m{\n",
    b"}\x1b[0m\n",
    b"    \"epoch\": 1,\n",
    b"    \"step\": 9,\n",
    b"    \"samples_seen\": 1116,\n",
    b"    \"total_loss\": NaN,\n",
    b"        \"num_epochs\": 99999999999999999999,\n",
    b"[09:12:10] INFO     ",
    b"           INFO     ",
    b"                    ",
    b"epoch=1, step=9, rank=0, samples_seen=1116, avg_loss=1.408, num_epoch_steps=8",
    b"num_gpus=2, num_batches=8, total_samples=1012,",
    b"     main_ds.py:170",
    b"Epoch: 1, Step: 9, Rank: 0, loss = 1.407523, grad_accum_steps = 1",
    b"Epoch: -9223372036854775808, Step: 0, Rank: 0, loss = tensor(",
    b"\x1b[93mSaving model in huggingface format at: samples_1116\x1b[0m\n",
    b"\x1b[93mModel saved in /output/ft/hf_format/samples_1116\x1b[0m\n",
    b"\x1b[93mSaving full model state in /output/ft/full_state/epoch_1\x1b[0m\n",
    b"\x1b[93mSaving training state: {'current_epoch': 1, 'samples_seen': 1116}\x1b[0m\n",
    b"\x1b[93mModel state saved in: /output/ft/full_state/epoch_1\x1b[0m\n",
    b"\x1b[93mLoading state from: /output/ft/full_state/epoch_0\x1b[0m\n",
    b"\x1b[93mTraining metadata loaded: {'current_epoch': 0, 'samples_seen': 992}\x1b[0m\n",
    b"Resuming mid-epoch: epoch=1, last_step=12\n",
    b"No checkpoints to load from: /output/ft/full_state\n",
    b"\rEpoch 0:  25%|\xe2\x96\x88\xe2\x96\x8c  | 3/12 [00:09<00:27,  3.10s/it]",
    b"\x1b[",
    b"\x1b]8;;file://x",
    b"\x1b",
    b"\0\0\0",
    b"\xff\xfe\xc3",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"=",
    b"tensor(1e",
];

fn arbitrary_log(rng: &mut Rng) -> Vec<u8> {
    let mut log = Vec::new();
    for _ in 0..rng.below(200) {
        match rng.below(25) {
            0..=2 => log.extend((0..rng.below(300)).map(|_| rng.next_u64() as u8)),
            // Rich's padding to 10,000 columns.
            3 => log.extend(std::iter::repeat_n(b' ', rng.below(12_000))),
            _ => {
                let piece = PIECES[rng.below(PIECES.len())];
                log.extend_from_slice(piece);
            }
        }
    }
    log
}

#[test]
fn arbitrary_bytes_never_panic_and_keep_memory_bounded() {
    let mut rng = Rng(0x5eed_0004);
    let mut logs: Vec<Vec<u8>> = (0..200).map(|_| arbitrary_log(&mut rng)).collect();
    // The worst shapes, large: no line end, an endless JSON block, an endless wrapped Rich
    // message, endless escapes, NULs.
    logs.push(vec![b'x'; 3_000_000]);
    logs.push([&b"\x1b[92m{\n"[..], &b"    \"step\": 1,\n".repeat(20_000)].concat());
    logs.push(
        [
            &b"[09:12:10] INFO     epoch=0,\n"[..],
            &[&b" ".repeat(20)[..], &b"x".repeat(100), b"\n"]
                .concat()
                .repeat(5_000),
        ]
        .concat(),
    );
    logs.push(b"\x1b[".repeat(300_000));
    logs.push(vec![0; 1_000_000]);
    for (i, log) in logs.iter().enumerate() {
        let whole = parse(log);
        let max_chunk = *rng.pick(&[1usize, 3, 64, 4096, 1 << 20]);
        let max_chunk = if log.len() > 100_000 {
            max_chunk.max(4096)
        } else {
            max_chunk
        };
        let chunked = parse_chunked(ProgressParser::new(), log, &mut rng, max_chunk);
        assert!(
            same(&chunked, &whole),
            "log {i}: chunking changed the records"
        );
        let offset = rng.below(log.len());
        parse_chunked(ProgressParser::cold(), &log[offset..], &mut rng, max_chunk);
        // The fold takes whatever the parser makes of it, and so does inspect.
        let now = FoldContext {
            total_epochs: Some(3),
            now: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(1_760_000_000).unwrap(),
            )),
        };
        fold(&LogState::default(), &whole, &now);
        inspect(log, None);
    }
}
