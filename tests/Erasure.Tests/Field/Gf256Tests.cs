using Appliance.Erasure.Field;
using Appliance.Erasure.Kernels;
using Xunit.Abstractions;

namespace Appliance.Erasure.Tests.Field;

/// <summary>The field's arithmetic against its definition (shift-and-add modulo 0x11d) and the field axioms.</summary>
public class Gf256Tests(ITestOutputHelper output)
{
    [Fact]
    public void TableMultiply_EqualsBitwiseMultiply_ForAllPairs()
    {
        for (var a = 0; a < 256; a++)
        {
            for (var b = 0; b < 256; b++)
            {
                if (Gf256.MulBitwise((byte)a, (byte)b) != Gf256.Mul((byte)a, (byte)b))
                {
                    Assert.Fail($"{a} * {b}: table {Gf256.Mul((byte)a, (byte)b)}, bitwise {Gf256.MulBitwise((byte)a, (byte)b)}");
                }
            }
        }
    }

    [Fact]
    public void Multiply_IsCommutativeAssociativeAndDistributes()
    {
        var rng = new Random(TestSeed.Get(nameof(Multiply_IsCommutativeAssociativeAndDistributes), output, 22));
        for (var n = 0; n < 200_000; n++)
        {
            var a = (byte)rng.Next(256);
            var b = (byte)rng.Next(256);
            var c = (byte)rng.Next(256);
            if (Gf256.Mul(a, b) != Gf256.Mul(b, a)
                || Gf256.Mul(Gf256.Mul(a, b), c) != Gf256.Mul(a, Gf256.Mul(b, c))
                || Gf256.Mul(a, (byte)(b ^ c)) != (Gf256.Mul(a, b) ^ Gf256.Mul(a, c)))
            {
                Assert.Fail($"a field axiom fails for a={a}, b={b}, c={c}");
            }
        }
    }

    [Fact]
    public void EveryNonZeroElement_HasAnInverse_AndDivisionUndoesMultiplication()
    {
        for (var a = 1; a < 256; a++)
        {
            Assert.Equal(1, Gf256.MulBitwise((byte)a, Gf256.Inv((byte)a)));
            for (var b = 1; b < 256; b++)
            {
                if (Gf256.Div(Gf256.Mul((byte)a, (byte)b), (byte)b) != a)
                {
                    Assert.Fail($"({a} * {b}) / {b} != {a}");
                }
            }
        }
        Assert.Throws<DivideByZeroException>(() => Gf256.Inv(0));
        Assert.Throws<DivideByZeroException>(() => Gf256.Div(5, 0));
    }

    [Fact]
    public void Two_GeneratesEveryNonZeroElement()
    {
        var seen = new HashSet<byte>();
        for (var i = 0; i < 255; i++)
        {
            Assert.True(seen.Add(Gf256.Exp(i)), $"2^{i} repeats an earlier power");
        }
        Assert.DoesNotContain((byte)0, seen);
        Assert.Equal(Gf256.Exp(0), Gf256.Exp(255));
    }

    /// <summary>The GFNI bit matrix, applied in software as GF2P8AFFINEQB defines it, multiplies by its constant.
    /// This checks the layout on any CPU; the kernel tests check the instruction itself where it exists.</summary>
    [Fact]
    public void AffineMatrix_AppliedAsTheInstructionDefines_MultipliesByItsConstant()
    {
        for (var c = 0; c < 256; c++)
        {
            var a = CodingMatrix.AffineMatrix((byte)c);
            for (var x = 0; x < 256; x++)
            {
                var y = 0;
                for (var i = 0; i < 8; i++)
                {
                    var row = (byte)(a >> (8 * (7 - i)));
                    y |= (System.Numerics.BitOperations.PopCount((uint)(row & x)) & 1) << i;
                }
                if (Gf256.MulBitwise((byte)c, (byte)x) != y)
                {
                    Assert.Fail($"the bit matrix of {c} maps {x} to {y}, not {Gf256.MulBitwise((byte)c, (byte)x)}");
                }
            }
        }
    }

    [Fact]
    public void MulRegion_MultipliesEveryByte()
    {
        var x = new byte[256];
        for (var i = 0; i < 256; i++)
        {
            x[i] = (byte)i;
        }
        var p = new byte[256];
        Gf256.MulRegion(0x53, x, p);
        for (var i = 0; i < 256; i++)
        {
            Assert.Equal(Gf256.MulBitwise(0x53, (byte)i), p[i]);
        }
        Assert.Throws<ArgumentException>(() => Gf256.MulRegion(3, x, new byte[10]));
    }
}
