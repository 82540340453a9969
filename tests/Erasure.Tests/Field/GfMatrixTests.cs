using Appliance.Erasure.Field;
using Xunit.Abstractions;

namespace Appliance.Erasure.Tests.Field;

/// <summary>Inversion, products, and the property the code rests on: any K rows of the generator are invertible.</summary>
public class GfMatrixTests(ITestOutputHelper output)
{
    [Fact]
    public void Invert_OfRandomInvertibleMatrices_GivesTheIdentityBothWays()
    {
        var rng = new Random(TestSeed.Get(nameof(Invert_OfRandomInvertibleMatrices_GivesTheIdentityBothWays), output, 7));
        var inverted = 0;
        for (var n = 0; n < 300; n++)
        {
            var size = rng.Next(1, 12);
            var m = new byte[size * size];
            rng.NextBytes(m);
            var inv = GfMatrix.Invert(m, size);
            if (inv is null)
            {
                continue;
            }
            inverted++;
            Assert.Equal(Identity(size), GfMatrix.Multiply(m, inv, size, size, size));
            Assert.Equal(Identity(size), GfMatrix.Multiply(inv, m, size, size, size));
        }
        Assert.True(inverted > 200, $"only {inverted} of 300 random matrices were invertible");
    }

    [Fact]
    public void Invert_OfASingularMatrix_IsNull()
    {
        // Row 2 = row 0 + row 1.
        byte[] m = [1, 2, 3, 4, 5, 6, 1 ^ 4, 2 ^ 5, 3 ^ 6];
        Assert.Null(GfMatrix.Invert(m, 3));
        Assert.Null(GfMatrix.Invert(new byte[4], 2));
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(4, 2)]
    [InlineData(8, 3)]
    [InlineData(10, 4)]
    [InlineData(6, 6)]
    public void CauchyGenerator_IsSystematic_AndEveryKRowsAreInvertible(int k, int m)
    {
        var g = GfMatrix.CauchyGenerator(k, m);
        Assert.Equal(Identity(k), g[..(k * k)]);
        var subsets = 0;
        foreach (var rows in Subsets(k + m, k))
        {
            var s = new byte[k * k];
            for (var i = 0; i < k; i++)
            {
                g.AsSpan(rows[i] * k, k).CopyTo(s.AsSpan(i * k));
            }
            Assert.True(GfMatrix.Invert(s, k) is not null, $"rows {string.Join(",", rows)} of the {k}+{m} generator are singular");
            subsets++;
        }
        output.WriteLine($"{k}+{m}: {subsets} row subsets invertible");
    }

    /// <summary>Why the generator is Cauchy: the identity with a plain Vandermonde matrix under it (parity row p is
    /// [1^p, 2^p, ..., K^p]) has K-row choices that are singular (here e.g. powers 0, 1, 3 of the columns 1, 2, 3,
    /// whose determinant carries the factor 1 + 2 + 3 = 0), so some erasure patterns would lose data.</summary>
    [Fact]
    public void NaiveVandermondeUnderIdentity_HasSingularRowChoices()
    {
        const int k = 10, m = 4;
        var g = new byte[(k + m) * k];
        for (var i = 0; i < k; i++)
        {
            g[(i * k) + i] = 1;
        }
        for (var j = 0; j < k; j++)
        {
            byte power = 1;
            for (var p = 0; p < m; p++)
            {
                g[((k + p) * k) + j] = power;
                power = Gf256.Mul(power, (byte)(j + 1));
            }
        }
        var singular = 0;
        foreach (var rows in Subsets(k + m, k))
        {
            var s = new byte[k * k];
            for (var i = 0; i < k; i++)
            {
                g.AsSpan(rows[i] * k, k).CopyTo(s.AsSpan(i * k));
            }
            singular += GfMatrix.Invert(s, k) is null ? 1 : 0;
        }
        output.WriteLine($"{singular} of 1001 row choices are singular");
        Assert.True(singular > 0);
    }

    internal static byte[] Identity(int n)
    {
        var m = new byte[n * n];
        for (var i = 0; i < n; i++)
        {
            m[(i * n) + i] = 1;
        }
        return m;
    }

    internal static IEnumerable<int[]> Subsets(int n, int size)
    {
        var idx = new int[size];
        for (var i = 0; i < size; i++)
        {
            idx[i] = i;
        }
        while (true)
        {
            yield return (int[])idx.Clone();
            var j = size - 1;
            while (j >= 0 && idx[j] == n - size + j)
            {
                j--;
            }
            if (j < 0)
            {
                yield break;
            }
            idx[j]++;
            for (var t = j + 1; t < size; t++)
            {
                idx[t] = idx[t - 1] + 1;
            }
        }
    }
}
