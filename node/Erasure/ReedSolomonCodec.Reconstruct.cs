using Appliance.Erasure.Field;
using Appliance.Erasure.Kernels;

namespace Appliance.Erasure;

public sealed unsafe partial class ReedSolomonCodec
{
    /// <summary>
    /// Rebuilds missing chunks from any K present ones. <paramref name="chunks"/> holds all K+M chunks in order (data
    /// 0..K-1, then parity); bit i of <paramref name="present"/> says chunk i holds valid bytes. Only the chunks in
    /// <paramref name="rebuild"/> that are not present are written (default: every missing one; pass the data mask
    /// for a degraded read that needs no parity). Present and rebuilt chunks must have one length; chunks neither
    /// present nor rebuilt are not touched and may be empty.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than K chunks present, chunk count not K+M, or lengths differ.</exception>
    public void Reconstruct(ReadOnlySpan<Memory<byte>> chunks, ulong present, ulong? rebuild = null)
    {
        if (chunks.Length != TotalChunks)
        {
            throw new ArgumentException($"{TotalChunks} chunks ({DataChunks} data + {ParityChunks} parity) expected, got {chunks.Length}", nameof(chunks));
        }
        var all = TotalChunks == 64 ? ulong.MaxValue : (1UL << TotalChunks) - 1;
        if ((present & ~all) != 0 || (rebuild is { } r && (r & ~all) != 0))
        {
            throw new ArgumentException($"chunk masks name chunks past the last ({TotalChunks - 1})", nameof(present));
        }
        var targets = (rebuild ?? all) & ~present;
        if (targets == 0)
        {
            return;
        }
        if (PopCount(present) < DataChunks)
        {
            throw new ArgumentException(
                $"only {PopCount(present)} of the {TotalChunks} chunks are present; at least {DataChunks} are needed to rebuild the others", nameof(present));
        }

        // Read the first K present chunks: data chunks first, as their generator rows are unit vectors.
        ulong sources = 0;
        var rest = present;
        for (var i = 0; i < DataChunks; i++)
        {
            var lowest = rest & (~rest + 1);
            sources |= lowest;
            rest &= ~lowest;
        }

        var len = -1;
        var which = sources | targets;
        for (var i = 0; i < TotalChunks; i++)
        {
            if ((which & (1UL << i)) == 0)
            {
                continue;
            }
            if (len < 0)
            {
                len = chunks[i].Length;
            }
            else if (chunks[i].Length != len)
            {
                throw new ArgumentException($"chunk {i} is {chunks[i].Length} bytes, not {len}: all chunks of a stripe must have one length", nameof(chunks));
            }
        }

        var matrix = _decodeCache.GetOrAdd(sources, targets, BuildDecodeMatrix);
        var pins = default(PinnedChunks);
        try
        {
            var ins = stackalloc byte*[DataChunks];
            var outs = stackalloc byte*[PopCount(targets)];
            int nIn = 0, nOut = 0;
            for (var i = 0; i < TotalChunks; i++)
            {
                if ((sources & (1UL << i)) != 0)
                {
                    ins[nIn++] = pins.Add(chunks[i]);
                }
                else if ((targets & (1UL << i)) != 0)
                {
                    outs[nOut++] = pins.Add(chunks[i]);
                }
            }
            GfRegion.Apply(Kernel, matrix, ins, outs, (nuint)len, accumulate: false);
        }
        finally
        {
            pins.Dispose();
        }
    }

    /// <summary>The mask of the K data chunks, for <see cref="Reconstruct"/>'s rebuild argument.</summary>
    public ulong DataMask => (1UL << DataChunks) - 1;

    /// <summary>
    /// The matrix from the K source chunks to the target chunks. With S the generator's rows of the sources, the
    /// data is S^-1 * sources, so target t is G[t] * S^-1 * sources: data and parity targets come out of one pass.
    /// </summary>
    private CodingMatrix BuildDecodeMatrix(ulong sources, ulong targets)
    {
        var k = DataChunks;
        var s = new byte[k * k];
        var t = new byte[PopCount(targets) * k];
        int si = 0, ti = 0;
        for (var i = 0; i < TotalChunks; i++)
        {
            if ((sources & (1UL << i)) != 0)
            {
                _generator.AsSpan(i * k, k).CopyTo(s.AsSpan(si++ * k));
            }
            else if ((targets & (1UL << i)) != 0)
            {
                _generator.AsSpan(i * k, k).CopyTo(t.AsSpan(ti++ * k));
            }
        }
        // Cannot be singular for a Cauchy generator (see GfMatrix.CauchyGenerator); if it were, that is a bug here.
        var inverse = GfMatrix.Invert(s, k) ?? throw new InvalidOperationException($"the generator rows of chunks {sources:x} are singular");
        return new CodingMatrix(GfMatrix.Multiply(t, inverse, ti, k, k), ti, k);
    }
}
