// Subnormal handling; compiled twice: default (IEEE subnormals) and with --ftz=true.
extern "C" __global__ void subnormal(const float* A, const float* B, float* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = A[i], b = B[i], r;
    out[i * 5 + 0] = a + b;
    out[i * 5 + 1] = a * b;
    out[i * 5 + 2] = fmaxf(a, b);
    asm("add.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));  // .ftz regardless of flags
    out[i * 5 + 3] = r;
    asm("add.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));      // never .ftz
    out[i * 5 + 4] = r;
}
