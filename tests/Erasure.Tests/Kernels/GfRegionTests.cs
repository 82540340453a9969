using System.Runtime.CompilerServices;
using Appliance.Erasure.Field;
using Appliance.Erasure.Kernels;
using Xunit.Abstractions;

namespace Appliance.Erasure.Tests.Kernels;

/// <summary>Each region kernel against products computed byte by byte (the product table, itself checked against
/// the bitwise definition in Gf256Tests): random matrices (more rows than one group
/// holds), lengths around every vector width and block size, unaligned regions, overwrite and accumulate.</summary>
public class GfRegionTests(ITestOutputHelper output)
{
    public static TheoryData<GfKernel> Kernels => [.. GfKernels.Supported];

    private static readonly int[] Lengths =
        [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 129, 4095, 4096, GfRegion.BlockBytes - 1, GfRegion.BlockBytes + 33, (3 * GfRegion.BlockBytes) + 5];

    [Fact]
    public void ThisMachine_RunsTheExpectedKernels()
    {
        output.WriteLine($"supported: {string.Join(", ", GfKernels.Supported)}; best: {GfKernels.Best}");
        Assert.Equal(GfKernel.Portable, GfKernels.Supported[0]);
        Assert.Equal(GfKernels.Supported[^1], GfKernels.Best);
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public unsafe void Apply_EqualsBytewiseProducts(GfKernel kernel)
    {
        var rng = new Random(TestSeed.Get($"{nameof(Apply_EqualsBytewiseProducts)}({kernel})", output, 22));
        var inPtrs = stackalloc byte*[12];
        var outPtrs = stackalloc byte*[9];
        var lengths = Lengths.Concat(Enumerable.Range(0, 20).Select(_ => rng.Next(0, 10_000)));
        foreach (var len in lengths)
        {
            var rows = rng.Next(1, 10);
            var cols = rng.Next(1, 13);
            var coefs = new byte[rows * cols];
            rng.NextBytes(coefs);
            // Zero and one coefficients are the special values a kernel might get wrong.
            coefs[0] = (byte)rng.Next(3);
            var m = new CodingMatrix(coefs, rows, cols);
            var accumulate = rng.Next(2) == 1;

            var ins = new (byte[] Buffer, int Offset)[cols];
            var outs = new (byte[] Buffer, int Offset)[rows];
            for (var c = 0; c < cols; c++)
            {
                ins[c] = RandomRegion(rng, len);
                inPtrs[c] = Address(ins[c]);
            }
            var expected = new byte[rows][];
            for (var r = 0; r < rows; r++)
            {
                outs[r] = RandomRegion(rng, len);
                outPtrs[r] = Address(outs[r]);
                expected[r] = new byte[len];
                for (var i = 0; i < len; i++)
                {
                    var s = accumulate ? outs[r].Buffer[outs[r].Offset + i] : (byte)0;
                    for (var c = 0; c < cols; c++)
                    {
                        s ^= Gf256.Mul(coefs[(r * cols) + c], ins[c].Buffer[ins[c].Offset + i]);
                    }
                    expected[r][i] = s;
                }
            }
            var guard = outs.Select(o => o.Buffer[o.Offset + len]).ToArray();
            var before = outs.Select(o => o.Buffer.ToArray()).ToArray();

            GfRegion.Apply(kernel, m, inPtrs, outPtrs, (nuint)len, accumulate);

            for (var r = 0; r < rows; r++)
            {
                var actual = outs[r].Buffer.AsSpan(outs[r].Offset, len);
                if (!expected[r].AsSpan().SequenceEqual(actual))
                {
                    // Whether the same call on the same bytes gets it right a second time: a kernel bug repeats, a
                    // machine that loses vector register state (seen once, on a loaded VM) does not.
                    var at = FirstDifference(expected[r], actual);
                    var got = actual[at];
                    for (var k = 0; k < rows; k++)
                    {
                        before[k].CopyTo(outs[k].Buffer, 0);
                    }
                    GfRegion.Apply(kernel, m, inPtrs, outPtrs, (nuint)len, accumulate);
                    var again = expected[r].AsSpan().SequenceEqual(outs[r].Buffer.AsSpan(outs[r].Offset, len));
                    Assert.Fail($"{kernel}: output {r} of {rows}x{cols}, {len} bytes, accumulate={accumulate} differs at byte {at} " +
                        $"(0x{got:x2}, expected 0x{expected[r][at]:x2}); the same call again is {(again ? "right" : "wrong again")}");
                }
                Assert.Equal(guard[r], outs[r].Buffer[outs[r].Offset + len]);
            }
        }
    }

    // A pinned buffer with the region at a random offset (so vector loads are unaligned) and one guard byte after it.
    private static (byte[] Buffer, int Offset) RandomRegion(Random rng, int len)
    {
        var offset = rng.Next(0, 64);
        var buffer = GC.AllocateArray<byte>(offset + len + 1, pinned: true);
        rng.NextBytes(buffer);
        return (buffer, offset);
    }

    private static unsafe byte* Address((byte[] Buffer, int Offset) region) =>
        (byte*)Unsafe.AsPointer(ref region.Buffer[region.Offset]);

    internal static int FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var n = Math.Min(a.Length, b.Length);
        for (var i = 0; i < n; i++)
        {
            if (a[i] != b[i])
            {
                return i;
            }
        }
        return n;
    }
}
