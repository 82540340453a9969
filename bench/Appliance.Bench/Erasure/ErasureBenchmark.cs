using System.Diagnostics;
using System.Globalization;
using Appliance.Bench.Common;
using Appliance.Erasure;
using Appliance.Erasure.Kernels;

namespace Appliance.Bench.Erasure;

/// <summary>
/// `bench erasure`: Reed-Solomon encode and decode GB/s on one core for 4+2 and 8+3 at 1 MiB stripes (1 MiB of data
/// split into K chunks), for each region kernel this CPU runs, beside ISA-L (libisal2) on the same buffers in the same
/// run. Decode rebuilds two lost data chunks from the first K survivors. GB/s counts the stripe's data bytes (K
/// chunks) per second for both, ours and ISA-L's alike. Before timing it checks that ISA-L's parity and rebuilt
/// chunks equal ours byte for byte.
/// </summary>
public sealed class ErasureBenchmark : IBenchmark
{
    public string Name => "erasure";

    public string Description => "Reed-Solomon encode/decode GB/s on one core, 4+2 and 8+3, each kernel vs ISA-L [--stripe 1M] [--seconds 0.5] [--rounds 3]";

    public Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var stripe = (int)a.GetSize("--stripe", 1 << 20);
        var seconds = a.Get("--seconds", 0.5);
        var rounds = Math.Max(1, a.Get("--rounds", 3));
        var isalMissing = IsaL.TryLoad();
        Console.WriteLine($"erasure: one thread, {stripe >> 10} KiB stripes, {seconds} s per figure, median of {rounds} rounds; kernels here: {string.Join(", ", GfKernels.Supported)}");
        if (isalMissing is not null)
        {
            Console.WriteLine($"ISA-L not measured: {isalMissing}");
        }
        Console.WriteLine($"{"code",-5} {"op",-7} {"path",-22} {"GB/s",7}  ratio to ISA-L's nearest path");
        var failed = false;
        foreach (var (k, m) in new[] { (4, 2), (8, 3) })
        {
            var chunk = stripe / k;
            var rng = new Random(k * 100 + m);
            var data = Enumerable.Range(0, k).Select(_ => Pinned(chunk, rng)).ToArray();
            var parity = Enumerable.Range(0, m).Select(_ => Pinned(chunk, null)).ToArray();
            var lost = new[] { 0, 1 };

            var isalEncode = new Dictionary<IsaLVariant, double>();
            var isalDecode = new Dictionary<IsaLVariant, double>();
            if (isalMissing is null)
            {
                using var isal = new IsaLCode(k, m, chunk, data, lost);
                var ours = new ReedSolomonCodec(k, m);
                ours.Encode([.. data.Select(d => (ReadOnlyMemory<byte>)d)], [.. parity.Select(p => (Memory<byte>)p)]);
                foreach (var variant in Enum.GetValues<IsaLVariant>())
                {
                    isal.Encode(variant);
                    isal.Decode(variant);
                    if (!isal.Agrees(parity, data, out var why))
                    {
                        Console.WriteLine($"error: {k}+{m} ISA-L {variant}: {why}");
                        failed = true;
                    }
                    isalEncode[variant] = Stats.Median(Enumerable.Range(0, rounds).Select(_ => Rate(stripe, seconds, () => isal.Encode(variant))));
                    isalDecode[variant] = Stats.Median(Enumerable.Range(0, rounds).Select(_ => Rate(stripe, seconds, () => isal.Decode(variant))));
                    Console.WriteLine($"{k}+{m,-3} {"encode",-7} {"ISA-L " + Label(variant),-22} {F(isalEncode[variant]),7}");
                    Console.WriteLine($"{k}+{m,-3} {"decode",-7} {"ISA-L " + Label(variant),-22} {F(isalDecode[variant]),7}");
                }
            }

            foreach (var kernel in GfKernels.Supported)
            {
                if (ct.IsCancellationRequested)
                {
                    return Task.FromResult(130);
                }
                var codec = new ReedSolomonCodec(k, m, kernel);
                ReadOnlyMemory<byte>[] ins = [.. data.Select(d => (ReadOnlyMemory<byte>)d)];
                Memory<byte>[] outs = [.. parity.Select(p => (Memory<byte>)p)];
                var enc = Stats.Median(Enumerable.Range(0, rounds).Select(_ => Rate(stripe, seconds, () => codec.Encode(ins, outs))));

                // Decode: chunks 0 and 1 lost, rebuilt into their own buffers from the other K+M-2.
                var chunks = data.Concat(parity).Select(c => (Memory<byte>)c).ToArray();
                var rebuilt = lost.Select(_ => Pinned(chunk, null)).ToArray();
                for (var i = 0; i < lost.Length; i++)
                {
                    chunks[lost[i]] = rebuilt[i];
                }
                var present = ((1UL << (k + m)) - 1) & ~0b11UL;
                codec.Reconstruct(chunks, present);
                for (var i = 0; i < lost.Length; i++)
                {
                    if (!rebuilt[i].AsSpan().SequenceEqual(data[lost[i]]))
                    {
                        Console.WriteLine($"error: {k}+{m} {kernel}: rebuilt chunk {lost[i]} differs from the original");
                        failed = true;
                    }
                }
                var dec = Stats.Median(Enumerable.Range(0, rounds).Select(_ => Rate(stripe, seconds, () => codec.Reconstruct(chunks, present))));
                // Each of our paths beside ISA-L's nearest: portable C, AVX2, and its best (AVX-512) for GFNI.
                var peer = kernel switch { GfKernel.Portable => IsaLVariant.Base, GfKernel.Avx2 => IsaLVariant.Avx2, _ => IsaLVariant.Best };
                Console.WriteLine($"{k}+{m,-3} {"encode",-7} {"ours " + kernel,-22} {F(enc),7} {Ratio(enc, isalEncode, peer)}");
                Console.WriteLine($"{k}+{m,-3} {"decode",-7} {"ours " + kernel,-22} {F(dec),7} {Ratio(dec, isalDecode, peer)}");
            }
        }
        SmallStripes(seconds, rounds, isalMissing is null);
        return Task.FromResult(failed ? 1 : 0);
    }

    /// <summary>4 KiB stripes (a small write), the best kernel only: per-call costs show here. The chunk-array API
    /// pins each chunk (a GC handle apiece); the contiguous one pins two buffers.</summary>
    private static void SmallStripes(double seconds, int rounds, bool withIsal)
    {
        const int stripe = 4096;
        Console.WriteLine($"small stripes: {stripe} bytes, {GfKernels.Best}, encode only");
        foreach (var (k, m) in new[] { (2, 1), (4, 2), (8, 3) })
        {
            var chunk = stripe / k;
            var rng = new Random(k);
            var codec = new ReedSolomonCodec(k, m);
            var contiguous = new byte[(k + m) * chunk];
            rng.NextBytes(contiguous.AsSpan(0, k * chunk));
            var data = Enumerable.Range(0, k).Select(i => Pinned(chunk, null)).ToArray();
            for (var i = 0; i < k; i++)
            {
                contiguous.AsSpan(i * chunk, chunk).CopyTo(data[i]);
            }
            ReadOnlyMemory<byte>[] ins = [.. data.Select(d => (ReadOnlyMemory<byte>)d)];
            Memory<byte>[] outs = [.. Enumerable.Range(0, m).Select(_ => (Memory<byte>)Pinned(chunk, null))];
            var chunks = Stats.Median(Enumerable.Range(0, rounds).Select(_ => Rate(stripe, seconds, () => codec.Encode(ins, outs))));
            var flat = Stats.Median(Enumerable.Range(0, rounds).Select(_ => Rate(stripe, seconds, () => codec.Encode(contiguous.AsSpan(0, k * chunk), contiguous.AsSpan(k * chunk)))));
            var line = $"{k}+{m,-3} ours, chunk array {F(chunks),6} GB/s; ours, contiguous {F(flat),6} GB/s";
            if (withIsal)
            {
                using var isal = new IsaLCode(k, m, chunk, data, [0]);
                var them = Stats.Median(Enumerable.Range(0, rounds).Select(_ => Rate(stripe, seconds, () => isal.Encode(IsaLVariant.Best))));
                line += $"; ISA-L best {F(them),6} GB/s (contiguous {F(flat / them)}x)";
            }
            Console.WriteLine(line);
        }
    }

    // Pinned, so ISA-L can be handed their addresses for the whole run; ours and ISA-L's runs use the same buffers.
    private static byte[] Pinned(int len, Random? fill)
    {
        var buffer = GC.AllocateArray<byte>(len, pinned: true);
        fill?.NextBytes(buffer);
        return buffer;
    }

    /// <summary>GB/s of <paramref name="op"/> over <paramref name="bytes"/> bytes, after a warm-up.</summary>
    private static double Rate(int bytes, double seconds, Action op)
    {
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalSeconds < Math.Min(0.1, seconds))
        {
            op();
        }
        long n = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            op();
            n++;
        }
        return n * (double)bytes / clock.Elapsed.TotalSeconds / 1e9;
    }

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private static string Ratio(double ours, Dictionary<IsaLVariant, double> isal, IsaLVariant peer) =>
        isal.TryGetValue(peer, out var t) ? $"{F(ours / t)}x ISA-L {Label(peer)}" : "";

    private static string Label(IsaLVariant v) => v switch
    {
        IsaLVariant.Base => "base (C)",
        IsaLVariant.Avx2 => "avx2",
        _ => "best (dispatch)",
    };
}
