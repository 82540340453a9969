using Appliance.Erasure.Kernels;
using Xunit.Abstractions;
using static Appliance.Erasure.Tests.StripeHelpers;

namespace Appliance.Erasure.Tests;

/// <summary>Encode against the definition and against ISA-L's bytes; rebuild from every erasure pattern; every
/// kernel gives the portable kernel's bytes; the delta update equals a re-encode.</summary>
public class ReedSolomonCodecTests(ITestOutputHelper output)
{
    public static TheoryData<GfKernel> Kernels => [.. GfKernels.Supported];

    /// <summary>Parity computed by ISA-L 2.30 (libisal2: gf_gen_cauchy1_matrix, ec_init_tables, ec_encode_data) for
    /// data byte j of chunk i = i*31 + j*7 + 1: our generator and field are ISA-L's, so our parity is its parity.</summary>
    [Theory]
    [InlineData(4, 2, new[] { "56f4b05fed4e08311bf7d1048c2d4f23", "4814e46cb98120ac333e8537d89eaaef" })]
    [InlineData(8, 3, new[] { "d98aad6041792fdbc7872ad8ea2d93fb", "eb83cd6a21829d0f75a94afe8a75da32", "2cad6d5effb63e56fdd5d338c4b3d01f" })]
    public void Encode_GivesIsalsParity(int k, int m, string[] isal)
    {
        foreach (var kernel in GfKernels.Supported)
        {
            var codec = new ReedSolomonCodec(k, m, kernel);
            var data = Enumerable.Range(0, k).Select(i => (ReadOnlyMemory<byte>)Enumerable.Range(0, 16).Select(j => (byte)((i * 31) + (j * 7) + 1)).ToArray()).ToArray();
            var parity = Enumerable.Range(0, m).Select(_ => new Memory<byte>(new byte[16])).ToArray();
            codec.Encode(data, parity);
            Assert.Equal(isal, parity.Select(p => Convert.ToHexStringLower(p.Span)).ToArray());
        }
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(4, 2)]
    [InlineData(8, 3)]
    [InlineData(10, 4)]
    [InlineData(3, 5)]
    public void EveryErasurePattern_UpToM_RebuildsTheStripe(int k, int m)
    {
        var rng = new Random(TestSeed.Get($"{nameof(EveryErasurePattern_UpToM_RebuildsTheStripe)}({k}+{m})", output, 1000 + (k * 16) + m));
        foreach (var kernel in GfKernels.Supported)
        {
            var codec = new ReedSolomonCodec(k, m, kernel);
            var len = rng.Next(0, 3) switch { 0 => rng.Next(0, 70), 1 => rng.Next(70, 700), _ => rng.Next(700, 3000) };
            var patterns = 0;
            foreach (var erased in ErasurePatterns(k + m, m))
            {
                CheckRebuild(codec, rng, len, erased);
                patterns++;
            }
            output.WriteLine($"{k}+{m} {kernel}: {patterns} patterns of {len} bytes rebuilt");
        }
    }

    [Theory]
    [InlineData(16, 4)]
    [InlineData(20, 8)]
    [InlineData(32, 32)]
    [InlineData(1, 1)]
    [InlineData(1, 5)]
    public void RandomErasurePatterns_OfLargerCodes_RebuildTheStripe(int k, int m)
    {
        var rng = new Random(TestSeed.Get($"{nameof(RandomErasurePatterns_OfLargerCodes_RebuildTheStripe)}({k}+{m})", output, 2000 + (k * 64) + m));
        foreach (var kernel in GfKernels.Supported)
        {
            var codec = new ReedSolomonCodec(k, m, kernel);
            for (var n = 0; n < 40; n++)
            {
                var erased = 0UL;
                var count = rng.Next(1, m + 1);
                while (System.Numerics.BitOperations.PopCount(erased) < count)
                {
                    erased |= 1UL << rng.Next(k + m);
                }
                CheckRebuild(codec, rng, rng.Next(0, 2000), erased);
            }
        }
    }

    private static void CheckRebuild(ReedSolomonCodec codec, Random rng, int len, ulong erased)
    {
        var (k, m) = (codec.DataChunks, codec.ParityChunks);
        var data = RandomData(rng, k, len);
        var parity = Buffers(rng, m, len);
        codec.Encode(data, parity);
        var original = data.Select(d => d.ToArray()).Concat(parity.Select(p => p.ToArray())).ToArray();

        // The chunks as a reader has them: erased ones hold garbage that must be overwritten.
        var chunks = original.Select((c, i) =>
        {
            var copy = RandomSlice(rng, len);
            if ((erased & (1UL << i)) == 0)
            {
                c.CopyTo(copy);
            }
            return copy;
        }).ToArray();
        var all = k + m == 64 ? ulong.MaxValue : (1UL << (k + m)) - 1;
        codec.Reconstruct(chunks, all & ~erased);
        for (var i = 0; i < k + m; i++)
        {
            Assert.True(original[i].AsSpan().SequenceEqual(chunks[i].Span),
                $"{k}+{m} {codec.Kernel}, {len} bytes, erased {erased:x}: chunk {i} differs at byte {Tests.Kernels.GfRegionTests.FirstDifference(original[i], chunks[i].Span)}");
        }
    }

    [Fact]
    public void Encode_OfEveryKernel_GivesThePortableBytes()
    {
        var rng = new Random(TestSeed.Get(nameof(Encode_OfEveryKernel_GivesThePortableBytes), output, 33));
        int[] lengths = [0, 1, 31, 33, 63, 65, 4095, 4097, 65_536 + 31, .. Enumerable.Range(0, 6).Select(_ => rng.Next(0, 100_000))];
        foreach (var (k, m) in new[] { (4, 2), (8, 3), (10, 4), (6, 9) })
        {
            var portable = new ReedSolomonCodec(k, m, GfKernel.Portable);
            foreach (var len in lengths)
            {
                var data = RandomData(rng, k, len);
                var expected = Buffers(rng, m, len);
                portable.Encode(data, expected);
                var reference = ReferenceParity(portable, data);
                for (var p = 0; p < m; p++)
                {
                    Assert.True(reference[p].AsSpan().SequenceEqual(expected[p].Span), $"{k}+{m} portable, {len} bytes: parity {p} differs from the definition");
                }
                foreach (var kernel in GfKernels.Supported)
                {
                    var codec = new ReedSolomonCodec(k, m, kernel);
                    var parity = Buffers(rng, m, len);
                    codec.Encode(data, parity);
                    for (var p = 0; p < m; p++)
                    {
                        Assert.True(expected[p].Span.SequenceEqual(parity[p].Span), $"{k}+{m} {kernel}, {len} bytes: parity {p} differs from the portable kernel's");
                    }
                    Assert.True(codec.Verify(data, [.. parity.Select(p => (ReadOnlyMemory<byte>)p)]));
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void UpdateParity_AndApplyDelta_EqualAFullReencode(GfKernel kernel)
    {
        var rng = new Random(TestSeed.Get($"{nameof(UpdateParity_AndApplyDelta_EqualAFullReencode)}({kernel})", output, 44));
        foreach (var (k, m) in new[] { (2, 1), (4, 2), (8, 3), (10, 4), (3, 6) })
        {
            var codec = new ReedSolomonCodec(k, m, kernel);
            var len = rng.Next(1, 20_000);
            var data = RandomData(rng, k, len).Select(d => d.ToArray()).ToArray();
            var parity = Buffers(rng, m, len);
            codec.Encode([.. data.Select(d => (ReadOnlyMemory<byte>)d)], parity);
            var viaDeltas = parity.Select(p => p.ToArray()).ToArray();
            for (var write = 0; write < 6; write++)
            {
                // Overwrite a random range of a random data chunk, as a partial write does.
                var d = rng.Next(k);
                var offset = rng.Next(len);
                var count = rng.Next(0, len - offset + 1);
                var oldBytes = data[d].AsSpan(offset, count).ToArray();
                var newBytes = new byte[count];
                rng.NextBytes(newBytes);
                newBytes.CopyTo(data[d], offset);

                codec.UpdateParity(d, oldBytes, newBytes, [.. parity.Select(p => p.Slice(offset, count))]);
                var delta = oldBytes.Zip(newBytes, (a, b) => (byte)(a ^ b)).ToArray();
                for (var p = 0; p < m; p++)
                {
                    codec.ApplyDelta(d, p, delta, viaDeltas[p].AsSpan(offset, count));
                }
            }
            var reencoded = ReferenceParity(codec, [.. data.Select(x => (ReadOnlyMemory<byte>)x)]);
            for (var p = 0; p < m; p++)
            {
                Assert.True(reencoded[p].AsSpan().SequenceEqual(parity[p].Span), $"{k}+{m} {kernel}: UpdateParity left parity {p} unlike a re-encode");
                Assert.True(reencoded[p].AsSpan().SequenceEqual(viaDeltas[p]), $"{k}+{m} {kernel}: ApplyDelta left parity {p} unlike a re-encode");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void ContiguousStripes_EncodeAndRebuildLikeSeparateChunks(GfKernel kernel)
    {
        var rng = new Random(TestSeed.Get($"{nameof(ContiguousStripes_EncodeAndRebuildLikeSeparateChunks)}({kernel})", output, 88));
        foreach (var (k, m) in new[] { (2, 1), (4, 2), (8, 3), (10, 4) })
        {
            var codec = new ReedSolomonCodec(k, m, kernel);
            foreach (var len in new[] { 0, 1, 33, 2048, rng.Next(1, 9000) })
            {
                var stripe = new byte[(k + m) * len];
                rng.NextBytes(stripe.AsSpan(0, k * len));
                codec.Encode(stripe.AsSpan(0, k * len), stripe.AsSpan(k * len));
                var data = Enumerable.Range(0, k).Select(i => (ReadOnlyMemory<byte>)stripe.AsMemory(i * len, len)).ToArray();
                var reference = ReferenceParity(codec, data);
                for (var p = 0; p < m; p++)
                {
                    Assert.True(reference[p].AsSpan().SequenceEqual(stripe.AsSpan((k + p) * len, len)), $"{k}+{m} {kernel}, {len} bytes: contiguous parity {p} is wrong");
                }
                for (var n = 0; n < 20; n++)
                {
                    var erased = 0UL;
                    var count = rng.Next(1, m + 1);
                    while (System.Numerics.BitOperations.PopCount(erased) < count)
                    {
                        erased |= 1UL << rng.Next(k + m);
                    }
                    var damaged = (byte[])stripe.Clone();
                    for (var i = 0; i < k + m; i++)
                    {
                        if ((erased & (1UL << i)) != 0)
                        {
                            rng.NextBytes(damaged.AsSpan(i * len, len));
                        }
                    }
                    codec.Reconstruct(damaged, ((1UL << (k + m)) - 1) & ~erased);
                    Assert.True(stripe.AsSpan().SequenceEqual(damaged), $"{k}+{m} {kernel}, {len} bytes, erased {erased:x}: the contiguous rebuild differs");
                }
            }
        }
    }

    [Fact]
    public void Reconstruct_OfDataOnly_LeavesMissingParityUntouched()
    {
        var rng = new Random(TestSeed.Get(nameof(Reconstruct_OfDataOnly_LeavesMissingParityUntouched), output, 55));
        var codec = new ReedSolomonCodec(4, 2);
        var data = RandomData(rng, 4, 1000);
        var parity = Buffers(rng, 2, 1000);
        codec.Encode(data, parity);
        var chunks = data.Select(d => (Memory<byte>)d.ToArray()).Concat(parity.Select(p => (Memory<byte>)p.ToArray())).ToArray();
        var lostData = chunks[1].ToArray();
        chunks[1].Span.Clear();
        chunks[5].Span.Fill(0xee);
        // Chunk 4 is present; 1 and 5 are lost; only data is wanted (a degraded read).
        codec.Reconstruct(chunks, 0b011101, codec.DataMask);
        Assert.Equal(lostData, chunks[1].ToArray());
        Assert.All(chunks[5].ToArray(), b => Assert.Equal(0xee, b));
        // A chunk neither present nor wanted may be empty.
        chunks[5] = Memory<byte>.Empty;
        chunks[1].Span.Clear();
        codec.Reconstruct(chunks, 0b011101, 0b10);
        Assert.Equal(lostData, chunks[1].ToArray());
    }

    [Fact]
    public void DecodeMatrices_AreCachedPerPattern_UpToTheBound()
    {
        var rng = new Random(TestSeed.Get(nameof(DecodeMatrices_AreCachedPerPattern_UpToTheBound), output, 66));
        var codec = new ReedSolomonCodec(10, 4);
        var data = RandomData(rng, 10, 64);
        var parity = Buffers(rng, 4, 64);
        codec.Encode(data, parity);
        var chunks = data.Select(d => (Memory<byte>)d.ToArray()).Concat(parity).ToArray();
        var patterns = ErasurePatterns(14, 4).ToList();
        codec.Reconstruct(chunks, ~patterns[0] & 0x3fff);
        codec.Reconstruct(chunks, ~patterns[0] & 0x3fff);
        Assert.Equal(1, codec.CachedDecodeMatrices);
        foreach (var erased in patterns)
        {
            codec.Reconstruct(chunks, ~erased & 0x3fff);
        }
        Assert.True(patterns.Count > ReedSolomonCodec.DecodeCacheCapacity);
        Assert.Equal(ReedSolomonCodec.DecodeCacheCapacity, codec.CachedDecodeMatrices);
    }

    [Fact]
    public async Task OneCodec_ServesManyThreads()
    {
        var seed = TestSeed.Get(nameof(OneCodec_ServesManyThreads), output, 77);
        var codec = new ReedSolomonCodec(8, 3);
        var tasks = Enumerable.Range(0, 8).Select(t => Task.Run(() =>
        {
            var rng = new Random(seed + t);
            for (var n = 0; n < 50; n++)
            {
                var erased = 0UL;
                while (System.Numerics.BitOperations.PopCount(erased) < 3)
                {
                    erased |= 1UL << rng.Next(11);
                }
                CheckRebuild(codec, rng, rng.Next(0, 5000), erased);
            }
        }));
        await Task.WhenAll(tasks);
    }
}
