using System.Globalization;
using System.Text;
using Appliance.Crush.Hashing;
using Appliance.Crush.Placement;

namespace Appliance.Crush.Tests;

public class PrimitiveTests
{
    private static IEnumerable<uint[]> Rows(string file) =>
        File.ReadLines(Vectors.PathOf("primitives/" + file))
            .Where(l => l.Length > 0)
            .Select(l => l.Split(' ').Select(s => uint.Parse(s, CultureInfo.InvariantCulture)).ToArray());

    [Fact]
    public void Hash32Family_MatchesLibcephCommon()
    {
        var n = 0;
        foreach (var r in Rows("hash32_1.txt"))
        {
            Assert.Equal(r[1], CrushHash.Hash32(r[0]));
            n++;
        }
        foreach (var r in Rows("hash32_2.txt"))
        {
            Assert.Equal(r[2], CrushHash.Hash32(r[0], r[1]));
            n++;
        }
        foreach (var r in Rows("hash32_3.txt"))
        {
            Assert.Equal(r[3], CrushHash.Hash32(r[0], r[1], r[2]));
            n++;
        }
        foreach (var r in Rows("hash32_4.txt"))
        {
            Assert.Equal(r[4], CrushHash.Hash32(r[0], r[1], r[2], r[3]));
            n++;
        }
        foreach (var r in Rows("hash32_5.txt"))
        {
            Assert.Equal(r[5], CrushHash.Hash32(r[0], r[1], r[2], r[3], r[4]));
            n++;
        }
        Assert.Equal(2000, n);
    }

    [Fact]
    public void CrushLn_MatchesEveryInput()
    {
        var count = 0;
        foreach (var line in File.ReadLines(Vectors.PathOf("primitives/crush_ln.txt")))
        {
            var parts = line.Split(' ');
            var u = uint.Parse(parts[0], CultureInfo.InvariantCulture);
            Assert.Equal(ulong.Parse(parts[1], CultureInfo.InvariantCulture), CrushHash.Ln(u));
            count++;
        }
        Assert.Equal(65536, count);
    }

    [Fact]
    public void LnTables_AreTheShippedOnes()
    {
        var rhlh = File.ReadLines(Vectors.PathOf("primitives/rh_lh_table.txt")).Select(l => ulong.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        var ll = File.ReadLines(Vectors.PathOf("primitives/ll_table.txt")).Select(l => ulong.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(rhlh, CrushLnTables.RhLh.ToArray());
        Assert.Equal(ll, CrushLnTables.Ll.ToArray());
    }

    [Fact]
    public void StrHashRjenkins_MatchesObjectNameVectors()
    {
        var count = 0;
        foreach (var line in File.ReadLines(Vectors.PathOf("primitives/str_hash_rjenkins.txt")))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            var expected = uint.Parse(line[..space], CultureInfo.InvariantCulture);
            var name = line[(space + 1)..];
            Assert.Equal(expected, CrushHash.StrHashRjenkins(Encoding.UTF8.GetBytes(name)));
            Assert.Equal(expected, PoolPlacement.ObjectHash(name));
            count++;
        }
        Assert.True(count > 100);
    }

    [Fact]
    public void PgAndPlacementSeed_MatchVectors()
    {
        var count = 0;
        foreach (var r in Rows("pg_pps.txt"))
        {
            var (pool, ps, pgNum, pgpNum) = ((int)r[0], r[1], r[2], r[3]);
            Assert.Equal(r[4], PoolPlacement.PgOf(ps, pgNum));
            Assert.Equal(r[5], PoolPlacement.PlacementSeed(pool, ps, pgpNum));
            Assert.Equal(r[6], PoolPlacement.PlacementSeed(pool, ps, pgpNum, hashPsPool: false));
            count++;
        }
        Assert.Equal(720, count);
    }

    [Theory]
    [InlineData(3, 3, 128)]     // 100 -> 128
    [InlineData(480, 3, 16384)] // 16000 -> 16384
    [InlineData(10, 2, 512)]    // 500 -> 512
    [InlineData(12, 3, 512)]    // 400 -> 512 (nearer than 256)
    [InlineData(5, 3, 128)]     // 166.7 -> 128
    [InlineData(1, 3, 32)]      // 33.3 -> 32
    [InlineData(0, 3, 1)]
    public void AutoPgCount_IsNearestPowerOfTwoOfHundredPerOsd(int osds, int size, int expected)
    {
        Assert.Equal(expected, PoolPlacement.AutoPgCount(osds, size));
        Assert.True(System.Numerics.BitOperations.IsPow2(expected));
    }

    [Fact]
    public void StableMod_StaysBelowB()
    {
        for (uint b = 1; b < 300; b++)
        {
            var mask = PoolPlacement.MaskFor(b);
            for (uint x = 0; x < 1000; x += 7)
            {
                Assert.True(PoolPlacement.StableMod(x, b, mask) < b);
            }
        }
    }
}

public class VectorHashTests
{
    [Fact]
    public void Hash32x8_EqualsScalarHashLaneByLane()
    {
        var rng = new Random(12345);
        for (var i = 0; i < 2000; i++)
        {
            var a = (uint)rng.NextInt64(0, 1L << 32);
            var c = (uint)rng.NextInt64(0, 1L << 32);
            var b = new uint[8];
            for (var k = 0; k < 8; k++)
            {
                b[k] = (uint)rng.NextInt64(0, 1L << 32);
            }
            var v = CrushHash.Hash32x8(a, System.Runtime.Intrinsics.Vector256.Create(b), c);
            for (var k = 0; k < 8; k++)
            {
                Assert.Equal(CrushHash.Hash32(a, b[k], c), v[k]);
            }
        }
    }
}

public class Straw2DrawTests
{
    [Fact]
    public void FastDivision_EqualsSigned64BitDivision()
    {
        var rng = new Random(777);
        uint[] special = [1, 2, 3, 0x10000, 0xFFFF, 0x10001, 6553, 238419, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE];
        for (var i = 0; i < 400_000; i++)
        {
            var u = (uint)rng.Next(0, 65536);
            var w = i < special.Length * 65536 / 8 ? special[i % special.Length] : (uint)rng.NextInt64(1, 1L << 32);
            var ln = (long)CrushHash.Ln(u) - 0x1000000000000L;
            Assert.Equal(ln / w, Appliance.Crush.Mapping.CrushMapper.Draw(u, w, 1.0 / w));
        }
        for (uint u = 0; u < 65536; u++)
        {
            foreach (var w in special)
            {
                var ln = (long)CrushHash.Ln(u) - 0x1000000000000L;
                Assert.Equal(ln / w, Appliance.Crush.Mapping.CrushMapper.Draw(u, w, 1.0 / w));
            }
        }
    }
}
