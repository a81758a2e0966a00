//! Row softmax, max-subtracted as torch does.

/// Softmax over each row of length `n`, in place.
pub fn softmax_rows(x: &mut [f32], n: usize) {
    for row in x.chunks_mut(n) {
        softmax_row(row);
    }
}

#[inline]
pub fn softmax_row(row: &mut [f32]) {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    let inv = 1.0 / s;
    row.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_sum_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1.0, 0.0, 1000.0];
        super::softmax_rows(&mut x, 3);
        assert!((x[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((x[5] - 1.0).abs() < 1e-6);
        assert!((x[2] - 0.665_240_9).abs() < 1e-6);
    }
}
