//! The metrics keys both formats share, read from a JSON block (`"key": value,`) or from a
//! `key=value, …` message, and turned into a [`Record`].

use super::record::{LossKey, MetricsFormat, Record, Setup, StepMetrics};
use super::scan::{float_prefix, int_prefix, trim};

/// The keys the progress needs; InstructLab logs more (learning rate, memory, token counts,
/// batch size).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Fields {
    epoch: Option<i64>,
    step: Option<i64>,
    rank: Option<i64>,
    samples_seen: Option<i64>,
    total_samples: Option<i64>,
    loss: Option<(f64, LossKey)>,
    throughput: Option<f64>,
    num_epoch_steps: Option<i64>,
    num_batches: Option<i64>,
    num_epochs: Option<i64>,
    val_loss: Option<f64>,
}

impl Fields {
    /// Records `key`'s value if the progress uses it. Values that are not numbers (`None`,
    /// `null`, strings) leave the field unset.
    pub(super) fn set(&mut self, key: &[u8], value: &[u8]) {
        let int = || int_prefix(value).map(|(v, _)| v);
        let float = || float_prefix(value).map(|(v, _)| v);
        match key {
            b"epoch" => self.epoch = int(),
            b"step" => self.step = int(),
            b"rank" => self.rank = int(),
            b"samples_seen" => self.samples_seen = int(),
            b"total_samples" => self.total_samples = int(),
            b"total_loss" => self.loss = float().map(|v| (v, LossKey::TotalLoss)),
            b"avg_loss" => self.loss = float().map(|v| (v, LossKey::AvgLoss)),
            b"overall_throughput" => self.throughput = float(),
            b"num_epoch_steps" => self.num_epoch_steps = int(),
            b"num_batches" => self.num_batches = int(),
            b"num_epochs" => self.num_epochs = int(),
            b"val_loss" => self.val_loss = float(),
            _ => {}
        }
    }

    /// A step when epoch, step and samples are known; a validation loss (`val_loss=…,
    /// val_num_tokens=…`, v0.14.2+); setup when the run's shape is; else nothing
    /// (hyperparameters, other dicts).
    pub(super) fn into_record(self, format: MetricsFormat) -> Option<Record> {
        if let (Some(epoch), Some(step), Some(samples_seen)) =
            (self.epoch, self.step, self.samples_seen)
        {
            return Some(Record::Step(StepMetrics {
                format,
                epoch,
                step,
                rank: self.rank,
                samples_seen,
                loss: self.loss.map(|(v, _)| v),
                loss_key: self.loss.map(|(_, k)| k),
                throughput: self.throughput,
                total_samples: self.total_samples,
                num_epoch_steps: self.num_epoch_steps,
            }));
        }
        if let Some(loss) = self.val_loss {
            return Some(Record::ValidationLoss { loss });
        }
        let setup = Setup {
            num_epochs: self.num_epochs,
            steps_per_epoch: self.num_batches,
            total_samples: self.total_samples,
        };
        (self.epoch.is_none() && setup != Setup::default()).then_some(Record::Setup(setup))
    }
}

/// Reads `key=value, key=value` as `FormatDictFilter` prints a dict (ints `%d`, floats `%.3f`
/// or `%.2e`, others `repr`). `None` unless the message starts with `identifier=`.
pub(super) fn key_values(message: &[u8]) -> Option<Fields> {
    let key_len = message
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/')
        .count();
    if key_len == 0 || message.get(key_len) != Some(&b'=') {
        return None;
    }
    let mut fields = Fields::default();
    for token in message.split(|&b| b == b',') {
        if let Some(eq) = token.iter().position(|&b| b == b'=') {
            fields.set(trim(&token[..eq]), trim(&token[eq + 1..]));
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_step() {
        let msg = b"epoch=1, step=9, rank=0, overall_throughput=54.512, lr=7.20e-06, \
            batch_size=124, avg_loss=1.408, samples_seen=1116, gradnorm=None, \
            total_samples=1012, num_epoch_steps=8";
        let Some(Record::Step(s)) = key_values(msg)
            .unwrap()
            .into_record(MetricsFormat::KeyValue)
        else {
            panic!("not a step");
        };
        assert_eq!(
            (s.epoch, s.step, s.rank, s.samples_seen),
            (1, 9, Some(0), 1116)
        );
        assert_eq!((s.loss, s.loss_key), (Some(1.408), Some(LossKey::AvgLoss)));
        assert_eq!(s.throughput, Some(54.512));
        assert_eq!((s.total_samples, s.num_epoch_steps), (Some(1012), Some(8)));
    }

    #[test]
    fn setup_and_other_dicts() {
        let setup = key_values(b"num_gpus=2, num_batches=8, total_samples=1012").unwrap();
        assert_eq!(
            setup.into_record(MetricsFormat::KeyValue),
            Some(Record::Setup(Setup {
                num_epochs: None,
                steps_per_epoch: Some(8),
                total_samples: Some(1012)
            }))
        );
        // v0.14.2-v0.16.2 log `{"val_loss": …, "val_num_tokens": …}` after the step's metrics.
        let validation = key_values(b"val_loss=1.234, val_num_tokens=5120").unwrap();
        assert_eq!(
            validation.into_record(MetricsFormat::KeyValue),
            Some(Record::ValidationLoss { loss: 1.234 })
        );
        let not_a_number = key_values(b"val_loss=None, val_num_tokens=0").unwrap();
        assert_eq!(not_a_number.into_record(MetricsFormat::KeyValue), None);
        assert!(key_values(b"Epoch: 0, Step: 1").is_none());
        assert!(key_values(b"=1").is_none());
    }
}
