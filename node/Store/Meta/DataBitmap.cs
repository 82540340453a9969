namespace Appliance.Store.Meta;

/// <summary>
/// Which blocks of the data area the applied metadata references (object data; index pages are the index's own
/// list), one bit per 4 KiB. Changed by <see cref="MetaState"/> as redo entries apply, persisted in the index by
/// chunk (<c>05 · "alloc" · chunk</c>, <see cref="ChunkBytes"/> each): a checkpoint writes only the chunks changed
/// since the last, and mount reads the chunks back instead of walking every onode. Differs from the running
/// allocator, which also holds blocks of transactions being prepared and freed blocks not yet reusable. Memory: one
/// bit per 4 KiB (32 MiB per TiB of data area). Not thread-safe (the state lock and the publish gate).
/// </summary>
internal sealed class DataBitmap(long firstBlock, long blockCount)
{
    /// <summary>Bytes per persisted chunk (one overflow page of the index): 32,000 blocks, 125 MiB of data area.</summary>
    public const int ChunkBytes = 4000;

    private const long ChunkBlocks = ChunkBytes * 8L;

    private readonly byte[] _bits = new byte[(blockCount + 7) / 8];
    private readonly HashSet<int> _dirty = [];

    public long First => firstBlock;

    public long Count => blockCount;

    /// <summary>Blocks marked.</summary>
    public long Used { get; private set; }

    public int Chunks => (int)((blockCount + ChunkBlocks - 1) / ChunkBlocks);

    public bool IsUsed(long phys)
    {
        var i = phys - firstBlock;
        return (_bits[i >> 3] & (1 << (int)(i & 7))) != 0;
    }

    public bool InRange(long phys) => phys >= firstBlock && phys < firstBlock + blockCount;

    public void Set(long phys, bool used)
    {
        var i = phys - firstBlock;
        ref var b = ref _bits[i >> 3];
        var mask = (byte)(1 << (int)(i & 7));
        if (((b & mask) != 0) == used)
        {
            return;
        }
        b ^= mask;
        Used += used ? 1 : -1;
        _dirty.Add((int)(i / ChunkBlocks));
    }

    /// <summary>The chunks changed since the last call, with their content (copies).</summary>
    public List<(int Chunk, byte[] Value)> TakeDirty()
    {
        var result = new List<(int, byte[])>(_dirty.Count);
        foreach (var c in _dirty.Order())
        {
            result.Add((c, ChunkSpan(c).ToArray()));
        }
        _dirty.Clear();
        return result;
    }

    private Span<byte> ChunkSpan(int chunk)
    {
        var from = chunk * ChunkBytes;
        return _bits.AsSpan(from, Math.Min(ChunkBytes, _bits.Length - from));
    }

    /// <summary>Loads a persisted chunk (mount); false when its number or length does not fit the data area.</summary>
    public bool Load(int chunk, ReadOnlySpan<byte> value)
    {
        if (chunk < 0 || chunk >= Chunks)
        {
            return false;
        }
        var span = ChunkSpan(chunk);
        if (value.Length != span.Length)
        {
            return false;
        }
        Used -= PopCount(span);
        value.CopyTo(span);
        Used += PopCount(span);
        // Bits past the data area's end must be clear.
        return chunk != Chunks - 1 || blockCount % 8 == 0 || _bits[^1] >> (int)(blockCount % 8) == 0;
    }

    private static long PopCount(ReadOnlySpan<byte> span)
    {
        long n = 0;
        foreach (var b in span)
        {
            n += System.Numerics.BitOperations.PopCount(b);
        }
        return n;
    }

    /// <summary>Every marked block, in order.</summary>
    public IEnumerable<long> Marked()
    {
        for (var i = 0; i < _bits.Length; i++)
        {
            if (_bits[i] == 0)
            {
                continue;
            }
            for (var k = 0; k < 8; k++)
            {
                if ((_bits[i] & (1 << k)) != 0)
                {
                    yield return firstBlock + i * 8L + k;
                }
            }
        }
    }

    /// <summary>The content of chunk <paramref name="chunk"/> as it would be persisted (fsck compares).</summary>
    public byte[] ChunkValue(int chunk) => ChunkSpan(chunk).ToArray();
}
