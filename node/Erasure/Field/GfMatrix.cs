namespace Appliance.Erasure.Field;

/// <summary>
/// Small dense matrices over GF(2^8), row-major in a byte[]: the generator matrix, sub-matrix inversion for
/// decoding, products. Sizes are at most 64x64, so plain loops do.
/// </summary>
public static class GfMatrix
{
    /// <summary>
    /// The systematic generator: (K+M) x K, the identity on top (data chunks stored as they are) and under it the
    /// Cauchy matrix C[p][j] = 1 / (x_p + y_j) with x_p = K + p and y_j = j, as ISA-L's gf_gen_cauchy1_matrix builds
    /// it. The x_p and y_j are K+M distinct elements ({K..K+M-1} and {0..K-1} are disjoint), so every square
    /// sub-matrix of C is invertible, and hence so is every choice of K rows of the whole generator.
    /// </summary>
    public static byte[] CauchyGenerator(int dataChunks, int parityChunks)
    {
        if (dataChunks < 1 || parityChunks < 1 || dataChunks + parityChunks > 256)
        {
            throw new ArgumentOutOfRangeException(nameof(dataChunks), $"a Cauchy generator needs 1 <= K, 1 <= M and K + M <= 256 (got {dataChunks}+{parityChunks})");
        }
        var rows = dataChunks + parityChunks;
        var g = new byte[rows * dataChunks];
        for (var i = 0; i < dataChunks; i++)
        {
            g[(i * dataChunks) + i] = 1;
        }
        for (var i = dataChunks; i < rows; i++)
        {
            for (var j = 0; j < dataChunks; j++)
            {
                g[(i * dataChunks) + j] = Gf256.Inv((byte)(i ^ j));
            }
        }
        return g;
    }

    /// <summary>The inverse of the n x n matrix <paramref name="m"/> (Gauss-Jordan), or null when it is singular.</summary>
    public static byte[]? Invert(ReadOnlySpan<byte> m, int n)
    {
        if (m.Length != n * n)
        {
            throw new ArgumentException($"a {n}x{n} matrix has {n * n} entries, not {m.Length}", nameof(m));
        }
        var a = m.ToArray();
        var inv = new byte[n * n];
        for (var i = 0; i < n; i++)
        {
            inv[(i * n) + i] = 1;
        }
        for (var col = 0; col < n; col++)
        {
            var pivot = col;
            while (pivot < n && a[(pivot * n) + col] == 0)
            {
                pivot++;
            }
            if (pivot == n)
            {
                return null;
            }
            if (pivot != col)
            {
                SwapRows(a, n, pivot, col);
                SwapRows(inv, n, pivot, col);
            }
            var scale = Gf256.Inv(a[(col * n) + col]);
            ScaleRow(a, n, col, scale);
            ScaleRow(inv, n, col, scale);
            for (var r = 0; r < n; r++)
            {
                var f = a[(r * n) + col];
                if (r != col && f != 0)
                {
                    AddScaledRow(a, n, r, col, f);
                    AddScaledRow(inv, n, r, col, f);
                }
            }
        }
        return inv;
    }

    /// <summary>a (r x k) times b (k x c).</summary>
    public static byte[] Multiply(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, int r, int k, int c)
    {
        if (a.Length != r * k || b.Length != k * c)
        {
            throw new ArgumentException($"cannot multiply {a.Length} entries as {r}x{k} by {b.Length} entries as {k}x{c}");
        }
        var p = new byte[r * c];
        for (var i = 0; i < r; i++)
        {
            for (var j = 0; j < c; j++)
            {
                byte s = 0;
                for (var t = 0; t < k; t++)
                {
                    s ^= Gf256.Mul(a[(i * k) + t], b[(t * c) + j]);
                }
                p[(i * c) + j] = s;
            }
        }
        return p;
    }

    private static void SwapRows(byte[] m, int n, int i, int j)
    {
        for (var c = 0; c < n; c++)
        {
            (m[(i * n) + c], m[(j * n) + c]) = (m[(j * n) + c], m[(i * n) + c]);
        }
    }

    private static void ScaleRow(byte[] m, int n, int row, byte f)
    {
        for (var c = 0; c < n; c++)
        {
            m[(row * n) + c] = Gf256.Mul(m[(row * n) + c], f);
        }
    }

    // row target += f * row source
    private static void AddScaledRow(byte[] m, int n, int target, int source, byte f)
    {
        for (var c = 0; c < n; c++)
        {
            m[(target * n) + c] ^= Gf256.Mul(m[(source * n) + c], f);
        }
    }
}
