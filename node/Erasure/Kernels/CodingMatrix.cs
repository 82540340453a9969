using Appliance.Erasure.Field;

namespace Appliance.Erasure.Kernels;

/// <summary>
/// A rows x cols coefficient matrix ready for the region kernels: output r = sum over c of Coefs[r][c] * input c.
/// Built once (the encode matrix per codec, a decode matrix per erasure pattern) and read by any number of threads;
/// it holds each coefficient expanded into the form every kernel wants, so no kernel builds tables per call.
/// </summary>
internal sealed class CodingMatrix
{
    public CodingMatrix(byte[] coefs, int rows, int cols)
    {
        if (coefs.Length != rows * cols)
        {
            throw new ArgumentException($"{rows}x{cols} coefficients expected, got {coefs.Length}", nameof(coefs));
        }
        Coefs = coefs;
        Rows = rows;
        Cols = cols;
        NibbleTables = GC.AllocateArray<byte>(coefs.Length * 64, pinned: true);
        AffineMatrices = GC.AllocateArray<ulong>(coefs.Length, pinned: true);
        for (var i = 0; i < coefs.Length; i++)
        {
            WriteNibbleTables(coefs[i], NibbleTables.AsSpan(i * 64, 64));
            AffineMatrices[i] = AffineMatrix(coefs[i]);
        }
    }

    public int Rows { get; }

    public int Cols { get; }

    /// <summary>The coefficients, row-major.</summary>
    public byte[] Coefs { get; }

    /// <summary>64 bytes per coefficient (row-major like Coefs): c*x for x = 0..15, twice (one copy per 128-bit lane
    /// of VPSHUFB), then c*(x &lt;&lt; 4) for x = 0..15, twice. Pinned.</summary>
    public byte[] NibbleTables { get; }

    /// <summary>The 8x8 bit matrix of multiplication by each coefficient, in GF2P8AFFINEQB's layout. Pinned.</summary>
    public ulong[] AffineMatrices { get; }

    /// <summary>
    /// GF2P8AFFINEQB computes output bit i of each byte x as parity(A.byte[7 - i] AND x). Multiplication by c is
    /// linear over GF(2): bit i of c*x is the XOR over j of x_j * (bit i of c*2^j). So byte 7 - i of A has bit j set
    /// when c*2^j has bit i set.
    /// </summary>
    public static ulong AffineMatrix(byte c)
    {
        ulong a = 0;
        for (var i = 0; i < 8; i++)
        {
            ulong row = 0;
            for (var j = 0; j < 8; j++)
            {
                if (((Gf256.Mul(c, (byte)(1 << j)) >> i) & 1) != 0)
                {
                    row |= 1UL << j;
                }
            }
            a |= row << (8 * (7 - i));
        }
        return a;
    }

    private static void WriteNibbleTables(byte c, Span<byte> t)
    {
        for (var x = 0; x < 16; x++)
        {
            t[x] = t[x + 16] = Gf256.Mul(c, (byte)x);
            t[x + 32] = t[x + 48] = Gf256.Mul(c, (byte)(x << 4));
        }
    }
}
