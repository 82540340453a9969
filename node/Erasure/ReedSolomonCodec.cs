using System.Numerics;
using Appliance.Erasure.Field;
using Appliance.Erasure.Kernels;

namespace Appliance.Erasure;

/// <summary>
/// A systematic Reed-Solomon code over GF(2^8): K data chunks stored as they are, M parity chunks computed from
/// them, and any K of the K+M chunks give back the rest. Chunks of one stripe have equal length, any length
/// (a partial stripe is just shorter chunks; byte i of each parity depends only on byte i of the data chunks, so a
/// caller may also encode or rebuild any byte range of a stripe by slicing). Thread-safe: one codec may serve every
/// PG of an OSD.
/// </summary>
/// <remarks>
/// Buffers are passed as <see cref="Memory{T}"/> because a variable number of spans cannot be passed in C# (no
/// arrays of ref structs); the codec pins them for the duration of a call (see ChunkList). The overloads over one contiguous buffer
/// avoid even that. Single-region operations take spans.
/// </remarks>
public sealed unsafe partial class ReedSolomonCodec
{
    /// <summary>The most chunks (K+M) of a stripe: erasure patterns are 64-bit masks.</summary>
    public const int MaxChunks = 64;

    /// <summary>Decode matrices kept (one per pattern of present and rebuilt chunks).</summary>
    public const int DecodeCacheCapacity = 256;

    private readonly byte[] _generator;
    private readonly CodingMatrix _encode;
    private readonly CodingMatrix[] _update;
    private readonly CodingMatrix?[] _single;
    private readonly DecodeMatrixCache _decodeCache = new(DecodeCacheCapacity);

    /// <summary>A codec for <paramref name="dataChunks"/> + <paramref name="parityChunks"/>.</summary>
    /// <param name="dataChunks">K, at least 1.</param>
    /// <param name="parityChunks">M, at least 1.</param>
    /// <param name="kernel">The region loop to use; null picks the fastest this CPU runs (<see cref="GfKernels.Best"/>).
    /// Forcing one is for tests and benchmarks.</param>
    /// <exception cref="ArgumentOutOfRangeException">K or M below 1, or K+M above <see cref="MaxChunks"/>.</exception>
    /// <exception cref="NotSupportedException">The forced kernel needs instructions this CPU lacks.</exception>
    public ReedSolomonCodec(int dataChunks, int parityChunks, GfKernel? kernel = null)
    {
        if (dataChunks < 1 || parityChunks < 1 || dataChunks + parityChunks > MaxChunks)
        {
            throw new ArgumentOutOfRangeException(nameof(dataChunks),
                $"an erasure code needs K >= 1 data and M >= 1 parity chunks with K + M <= {MaxChunks}; got {dataChunks}+{parityChunks}");
        }
        var chosen = kernel ?? GfKernels.Best;
        if (!GfKernels.IsSupported(chosen))
        {
            throw new NotSupportedException($"the {chosen} kernel needs instructions this CPU does not have; supported: {string.Join(", ", GfKernels.Supported)}");
        }
        DataChunks = dataChunks;
        ParityChunks = parityChunks;
        Kernel = chosen;
        _generator = GfMatrix.CauchyGenerator(dataChunks, parityChunks);
        _encode = new CodingMatrix(_generator.AsSpan(dataChunks * dataChunks).ToArray(), parityChunks, dataChunks);
        _update = new CodingMatrix[dataChunks];
        for (var d = 0; d < dataChunks; d++)
        {
            // parity ^= c*old ^ c*new: the delta update as one pass over old and new, no temporary buffer.
            var coefs = new byte[parityChunks * 2];
            for (var p = 0; p < parityChunks; p++)
            {
                coefs[2 * p] = coefs[(2 * p) + 1] = Coefficient(p, d);
            }
            _update[d] = new CodingMatrix(coefs, parityChunks, 2);
        }
        _single = new CodingMatrix?[parityChunks * dataChunks];
    }

    /// <summary>K.</summary>
    public int DataChunks { get; }

    /// <summary>M.</summary>
    public int ParityChunks { get; }

    /// <summary>K + M.</summary>
    public int TotalChunks => DataChunks + ParityChunks;

    /// <summary>The region loop this codec runs.</summary>
    public GfKernel Kernel { get; }

    /// <summary>Decode matrices currently cached.</summary>
    public int CachedDecodeMatrices => _decodeCache.Count;

    /// <summary>The (K+M) x K generator, row-major: identity on top, the Cauchy rows below.</summary>
    public ReadOnlySpan<byte> Generator => _generator;

    /// <summary>The coefficient of data chunk <paramref name="dataIndex"/> in parity chunk <paramref name="parityIndex"/>.</summary>
    public byte Coefficient(int parityIndex, int dataIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(parityIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(parityIndex, ParityChunks);
        ArgumentOutOfRangeException.ThrowIfNegative(dataIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(dataIndex, DataChunks);
        return _generator[((DataChunks + parityIndex) * DataChunks) + dataIndex];
    }

    /// <summary>Computes the M parity chunks of the K data chunks (all of one length; parity is overwritten).</summary>
    /// <exception cref="ArgumentException">Not K data and M parity chunks, or lengths differ.</exception>
    public void Encode(ReadOnlySpan<ReadOnlyMemory<byte>> data, ReadOnlySpan<Memory<byte>> parity)
    {
        var len = CheckStripe(data, parity);
        var list = default(ChunkList);
        foreach (var d in data)
        {
            list.Add(d);
        }
        foreach (var p in parity)
        {
            list.Add(p);
        }
        list.Apply(Kernel, _encode, DataChunks, (nuint)len, accumulate: false);
    }

    /// <summary>
    /// <see cref="Encode(ReadOnlySpan{ReadOnlyMemory{byte}}, ReadOnlySpan{Memory{byte}})"/> over contiguous buffers:
    /// <paramref name="data"/> holds the K data chunks back to back, <paramref name="parity"/> receives the M parity
    /// chunks back to back (chunk length data.Length / K). Nothing to pin per chunk, so small stripes (a 4 KiB
    /// write) pay no per-chunk cost.
    /// </summary>
    /// <exception cref="ArgumentException">data is not K equal chunks, or parity is not M chunks of that length.</exception>
    public void Encode(ReadOnlySpan<byte> data, Span<byte> parity)
    {
        if (data.Length % DataChunks != 0)
        {
            throw new ArgumentException($"{DataChunks} data chunks back to back cannot be {data.Length} bytes (not a multiple of {DataChunks})", nameof(data));
        }
        var len = data.Length / DataChunks;
        if (parity.Length != len * ParityChunks)
        {
            throw new ArgumentException($"{ParityChunks} parity chunks of {len} bytes take {len * ParityChunks} bytes, not {parity.Length}", nameof(parity));
        }
        fixed (byte* d = data, p = parity)
        {
            var ins = stackalloc byte*[DataChunks];
            var outs = stackalloc byte*[ParityChunks];
            for (var i = 0; i < DataChunks; i++)
            {
                ins[i] = d + ((nint)i * len);
            }
            for (var i = 0; i < ParityChunks; i++)
            {
                outs[i] = p + ((nint)i * len);
            }
            GfRegion.Apply(Kernel, _encode, ins, outs, (nuint)len, accumulate: false);
        }
    }

    /// <summary>Whether <paramref name="parity"/> is the parity of <paramref name="data"/> (deep scrub's check).
    /// Encodes into a pooled buffer and compares.</summary>
    /// <exception cref="ArgumentException">Not K data and M parity chunks, or lengths differ.</exception>
    public bool Verify(ReadOnlySpan<ReadOnlyMemory<byte>> data, ReadOnlySpan<ReadOnlyMemory<byte>> parity)
    {
        var len = CheckLengths(data, DataChunks, "data", -1);
        CheckLengths(parity, ParityChunks, "parity", len);
        var computed = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(1, len * ParityChunks));
        try
        {
            var outs = new Memory<byte>[ParityChunks];
            for (var p = 0; p < ParityChunks; p++)
            {
                outs[p] = computed.AsMemory(p * len, len);
            }
            Encode(data, outs);
            for (var p = 0; p < ParityChunks; p++)
            {
                if (!outs[p].Span.SequenceEqual(parity[p].Span))
                {
                    return false;
                }
            }
            return true;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(computed);
        }
    }

    /// <summary>
    /// Brings the parity up to date after data chunk <paramref name="dataIndex"/> changed from
    /// <paramref name="oldData"/> to <paramref name="newData"/> (parity_p += c_pd * (old + new)): a partial
    /// overwrite need not read the other data chunks. The three ranges are the same bytes of their chunks.
    /// </summary>
    /// <exception cref="ArgumentException">Not M parity regions, or lengths differ.</exception>
    public void UpdateParity(int dataIndex, ReadOnlyMemory<byte> oldData, ReadOnlyMemory<byte> newData, ReadOnlySpan<Memory<byte>> parity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dataIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(dataIndex, DataChunks);
        if (oldData.Length != newData.Length)
        {
            throw new ArgumentException($"the old data is {oldData.Length} bytes and the new {newData.Length}; a parity update needs both ranges of one length", nameof(newData));
        }
        CheckLengths(parity, ParityChunks, "parity", oldData.Length);
        var list = default(ChunkList);
        list.Add(oldData);
        list.Add(newData);
        foreach (var p in parity)
        {
            list.Add(p);
        }
        list.Apply(Kernel, _update[dataIndex], 2, (nuint)oldData.Length, accumulate: true);
    }

    /// <summary>
    /// parity += c_pd * delta for one parity chunk, where delta = old + new (XOR) of data chunk
    /// <paramref name="dataIndex"/>: what a parity chunk's holder applies when the primary ships it the delta.
    /// </summary>
    /// <exception cref="ArgumentException">Lengths differ.</exception>
    public void ApplyDelta(int dataIndex, int parityIndex, ReadOnlySpan<byte> delta, Span<byte> parity)
    {
        var c = Coefficient(parityIndex, dataIndex);
        if (delta.Length != parity.Length)
        {
            throw new ArgumentException($"the delta is {delta.Length} bytes and the parity range {parity.Length}; they must be the same range", nameof(parity));
        }
        var slot = (parityIndex * DataChunks) + dataIndex;
        // Racing first calls may both build the 1x1 matrix; they are equal, and whichever is stored wins.
        var m = _single[slot] ??= new CodingMatrix([c], 1, 1);
        fixed (byte* d = delta, p = parity)
        {
            var ins = stackalloc byte*[] { d };
            var outs = stackalloc byte*[] { p };
            GfRegion.Apply(Kernel, m, ins, outs, (nuint)delta.Length, accumulate: true);
        }
    }

    private int CheckStripe(ReadOnlySpan<ReadOnlyMemory<byte>> data, ReadOnlySpan<Memory<byte>> parity)
    {
        var len = CheckLengths(data, DataChunks, "data", -1);
        CheckLengths(parity, ParityChunks, "parity", len);
        return len;
    }

    private static int CheckLengths(ReadOnlySpan<ReadOnlyMemory<byte>> chunks, int count, string what, int len)
    {
        if (chunks.Length != count)
        {
            throw new ArgumentException($"{count} {what} chunks expected, got {chunks.Length}", what);
        }
        for (var i = 0; i < chunks.Length; i++)
        {
            if (len < 0)
            {
                len = chunks[i].Length;
            }
            else if (chunks[i].Length != len)
            {
                throw new ArgumentException($"{what} chunk {i} is {chunks[i].Length} bytes, not {len}: all chunks of a stripe must have one length", what);
            }
        }
        return len;
    }

    private static int CheckLengths(ReadOnlySpan<Memory<byte>> chunks, int count, string what, int len)
    {
        if (chunks.Length != count)
        {
            throw new ArgumentException($"{count} {what} chunks expected, got {chunks.Length}", what);
        }
        for (var i = 0; i < chunks.Length; i++)
        {
            if (chunks[i].Length != len)
            {
                throw new ArgumentException($"{what} chunk {i} is {chunks[i].Length} bytes, not {len}: all chunks of a stripe must have one length", what);
            }
        }
        return len;
    }

    private static int PopCount(ulong mask) => BitOperations.PopCount(mask);
}
