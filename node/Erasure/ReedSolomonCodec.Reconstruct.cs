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
        if (!Plan(present, rebuild, out var sources, out var targets))
        {
            return;
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
        var list = default(ChunkList);
        for (var i = 0; i < TotalChunks; i++)
        {
            if ((sources & (1UL << i)) != 0)
            {
                list.Add(chunks[i]);
            }
        }
        for (var i = 0; i < TotalChunks; i++)
        {
            if ((targets & (1UL << i)) != 0)
            {
                list.Add(chunks[i]);
            }
        }
        list.Apply(Kernel, matrix, DataChunks, (nuint)len, accumulate: false);
    }

    /// <summary>
    /// <see cref="Reconstruct(ReadOnlySpan{Memory{byte}}, ulong, ulong?)"/> over one buffer holding the K+M chunks
    /// back to back (chunk i at i * chunkLength; the length is <paramref name="stripe"/>.Length / (K+M)). Nothing to
    /// pin per chunk, so small stripes pay no per-chunk cost.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than K chunks present, or the buffer is not K+M equal chunks.</exception>
    public void Reconstruct(Span<byte> stripe, ulong present, ulong? rebuild = null)
    {
        if (stripe.Length % TotalChunks != 0)
        {
            throw new ArgumentException($"a stripe of {TotalChunks} chunks back to back cannot be {stripe.Length} bytes (not a multiple of {TotalChunks})", nameof(stripe));
        }
        if (!Plan(present, rebuild, out var sources, out var targets))
        {
            return;
        }
        var len = stripe.Length / TotalChunks;
        fixed (byte* p = stripe)
        {
            var addresses = stackalloc byte*[TotalChunks];
            for (var i = 0; i < TotalChunks; i++)
            {
                addresses[i] = p + ((nint)i * len);
            }
            Decode(sources, targets, addresses, len);
        }
    }

    // Checks the masks; false when nothing is to be rebuilt. Sources are the first K present chunks: data chunks
    // first, as their generator rows are unit vectors.
    private bool Plan(ulong present, ulong? rebuild, out ulong sources, out ulong targets)
    {
        var all = TotalChunks == 64 ? ulong.MaxValue : (1UL << TotalChunks) - 1;
        if ((present & ~all) != 0 || (rebuild is { } r && (r & ~all) != 0))
        {
            throw new ArgumentException($"chunk masks name chunks past the last ({TotalChunks - 1})", nameof(present));
        }
        sources = 0;
        targets = (rebuild ?? all) & ~present;
        if (targets == 0)
        {
            return false;
        }
        if (PopCount(present) < DataChunks)
        {
            throw new ArgumentException(
                $"only {PopCount(present)} of the {TotalChunks} chunks are present; at least {DataChunks} are needed to rebuild the others", nameof(present));
        }
        var rest = present;
        for (var i = 0; i < DataChunks; i++)
        {
            var lowest = rest & (~rest + 1);
            sources |= lowest;
            rest &= ~lowest;
        }
        return true;
    }

    // addresses[i] is chunk i's (null for chunks neither read nor written).
    private void Decode(ulong sources, ulong targets, byte** addresses, int len)
    {
        var matrix = _decodeCache.GetOrAdd(sources, targets, BuildDecodeMatrix);
        var ins = stackalloc byte*[DataChunks];
        var outs = stackalloc byte*[PopCount(targets)];
        int nIn = 0, nOut = 0;
        for (var i = 0; i < TotalChunks; i++)
        {
            if ((sources & (1UL << i)) != 0)
            {
                ins[nIn++] = addresses[i];
            }
            else if ((targets & (1UL << i)) != 0)
            {
                outs[nOut++] = addresses[i];
            }
        }
        GfRegion.Apply(Kernel, matrix, ins, outs, (nuint)len, accumulate: false);
    }

    /// <summary>The mask of the K data chunks, for Reconstruct's rebuild argument.</summary>
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
