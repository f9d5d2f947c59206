//! Rate estimator (ip_vs_est.c): one sample every 2 s, EWMA with W = 1/4,
//! pps/cps scaled by 2^10, bps by 2^5, half-up rounding on read.

use crate::types::{Rates, Stats};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Estimator {
    last: [u64; 5],
    /// Scaled EWMA values: cps, inpps, outpps (<<10), inbps, outbps (<<5).
    est: [u64; 5],
}

fn arr(s: &Stats) -> [u64; 5] {
    [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes]
}

impl Estimator {
    /// One 2-second sample (ip_vs_chain_estimation).
    pub fn sample(&mut self, s: &Stats) {
        let now = arr(s);
        for (i, &cur) in now.iter().enumerate() {
            let delta = cur.wrapping_sub(self.last[i]);
            self.last[i] = cur;
            // pps/cps: delta << 9 (= delta/2s << 10); bps: delta << 4 (= delta/2s << 5)
            let rate = if i < 3 { delta << 9 } else { delta << 4 };
            let diff = (rate as i64).wrapping_sub(self.est[i] as i64);
            self.est[i] = (self.est[i] as i64).wrapping_add(diff >> 2) as u64;
        }
    }

    /// ip_vs_read_estimator.
    pub fn read(&self) -> Rates {
        Rates {
            cps: (self.est[0] + 0x1FF) >> 10,
            inpps: (self.est[1] + 0x1FF) >> 10,
            outpps: (self.est[2] + 0x1FF) >> 10,
            inbps: (self.est[3] + 0xF) >> 5,
            outbps: (self.est[4] + 0xF) >> 5,
        }
    }

    /// (scaled EWMA values, counters at the last sample).
    pub fn raw(&self) -> ([u64; 5], [u64; 5]) {
        (self.est, self.last)
    }

    /// Restore what [`Estimator::raw`] read.
    pub fn set_raw(&mut self, est: [u64; 5], last: [u64; 5]) {
        self.est = est;
        self.last = last;
    }

    /// ip_vs_zero_estimator: last = current counters, rates = 0.
    pub fn zero(&mut self, s: &Stats) {
        self.last = arr(s);
        self.est = [0; 5];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_1000_bytes_per_second_converges_to_1000() {
        let mut e = Estimator::default();
        let mut s = Stats::default();
        for _ in 0..200 {
            s.inbytes += 2000;
            s.inpkts += 20;
            s.conns += 2;
            e.sample(&s);
        }
        let r = e.read();
        assert_eq!(r.inbps, 1000);
        assert_eq!(r.inpps, 10);
        assert_eq!(r.cps, 1);
        assert_eq!(r.outbps, 0);
    }

    #[test]
    fn first_sample_is_a_quarter() {
        let mut e = Estimator::default();
        let s = Stats {
            inpkts: 400,
            ..Stats::default()
        };
        e.sample(&s);
        // rate = 400<<9 = 204800; est = 51200; read = (51200+511)>>10 = 50
        assert_eq!(e.read().inpps, 50);
        let s2 = s;
        e.sample(&s2); // no traffic: est = 51200 - 12800 = 38400; (38400 + 511) >> 10 = 37
        assert_eq!(e.read().inpps, 37);
        e.zero(&s2);
        assert_eq!(e.read(), Rates::default());
    }
}
