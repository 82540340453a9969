namespace Appliance.Erasure.Field;

/// <summary>
/// Arithmetic in GF(2^8) with the field polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), the one ISA-L, Jerasure and
/// klauspost/reedsolomon use, so our parity bytes equal theirs for the same generator matrix. Addition is XOR;
/// multiplication goes through log/exp tables (built once from the generator 2, which is primitive for 0x11d) and a
/// full 256x256 product table for the region loops.
/// </summary>
public static class Gf256
{
    /// <summary>The field polynomial, with its x^8 term.</summary>
    public const int Polynomial = 0x11d;

    // ExpTable has 510 useful entries so Exp[Log[a] + Log[b]] needs no modulo.
    private static readonly byte[] ExpTable = new byte[512];
    private static readonly byte[] LogTable = new byte[256];

    /// <summary>a*b for every pair at [a * 256 + b]; pinned so the region kernels index it through a pointer.</summary>
    internal static readonly byte[] MulTable = GC.AllocateArray<byte>(256 * 256, pinned: true);

    static Gf256()
    {
        var x = 1;
        for (var i = 0; i < 255; i++)
        {
            ExpTable[i] = (byte)x;
            ExpTable[i + 255] = (byte)x;
            LogTable[x] = (byte)i;
            x <<= 1;
            if ((x & 0x100) != 0)
            {
                x ^= Polynomial;
            }
        }
        for (var a = 0; a < 256; a++)
        {
            for (var b = 0; b < 256; b++)
            {
                MulTable[(a << 8) | b] = a == 0 || b == 0 ? (byte)0 : ExpTable[LogTable[a] + LogTable[b]];
            }
        }
    }

    /// <summary>a + b (and a - b): XOR.</summary>
    public static byte Add(byte a, byte b) => (byte)(a ^ b);

    /// <summary>a * b through the product table.</summary>
    public static byte Mul(byte a, byte b) => MulTable[(a << 8) | b];

    /// <summary>a * b by shift-and-add with reduction modulo 0x11d: slow, independent of the tables (the tests'
    /// reference).</summary>
    public static byte MulBitwise(byte a, byte b)
    {
        var product = 0;
        int x = a;
        for (int y = b; y != 0; y >>= 1)
        {
            if ((y & 1) != 0)
            {
                product ^= x;
            }
            x <<= 1;
            if ((x & 0x100) != 0)
            {
                x ^= Polynomial;
            }
        }
        return (byte)product;
    }

    /// <summary>The multiplicative inverse of a non-zero element.</summary>
    /// <exception cref="DivideByZeroException">a is 0.</exception>
    public static byte Inv(byte a) => a == 0 ? throw new DivideByZeroException("0 has no inverse in GF(2^8)") : ExpTable[255 - LogTable[a]];

    /// <summary>a / b for non-zero b.</summary>
    /// <exception cref="DivideByZeroException">b is 0.</exception>
    public static byte Div(byte a, byte b)
    {
        if (b == 0)
        {
            throw new DivideByZeroException("division by 0 in GF(2^8)");
        }
        return a == 0 ? (byte)0 : ExpTable[LogTable[a] + 255 - LogTable[b]];
    }

    /// <summary>2^n, n taken modulo 255.</summary>
    public static byte Exp(int n) => ExpTable[((n % 255) + 255) % 255];

    /// <summary>a * x for every byte of a region: the portable region loop's building block, exposed for tests.</summary>
    public static void MulRegion(byte c, ReadOnlySpan<byte> x, Span<byte> product)
    {
        if (product.Length < x.Length)
        {
            throw new ArgumentException($"the product region ({product.Length} bytes) is shorter than the input ({x.Length} bytes)", nameof(product));
        }
        var row = MulTable.AsSpan(c << 8, 256);
        for (var i = 0; i < x.Length; i++)
        {
            product[i] = row[x[i]];
        }
    }
}
