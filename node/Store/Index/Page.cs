using System.Buffers.Binary;
using Appliance.Platform.Checksums;

namespace Appliance.Store.Index;

/// <summary>What a page holds.</summary>
internal enum PageKind : byte
{
    Leaf = 1,
    Branch = 2,
    Overflow = 3,
}

/// <summary>
/// The on-disk format of one 4 KiB index page, and the operations on a page's bytes (a slotted page: a slot array of
/// u16 cell offsets after the header, cells packed from the end of the page downwards).
///
/// Header (48 bytes, little-endian):
/// <code>
///  0 u32 magic "APIX"      4 u8 version (1)    5 u8 kind (1 leaf, 2 branch, 3 overflow)   6 u16 level (0 = leaf)
///  8 i64 page number       16 i64 generation (the commit that wrote the page)
/// 24 u16 cell count        26 u16 heap start (lowest cell offset; 4096 when empty)
/// 28 u32 crc32c of the whole page with this field zero, seeded with the caller's seed
/// 32 i64 next page (overflow: the chain's next page or -1; else -1)
/// 40 u32 bytes used (overflow: payload bytes in this page; else 0)       44 u32 reserved (0)
/// 48 u16 slots[count]
/// </code>
/// Leaf cell: u16 key length, u8 flags, u16 value length, key, value. Flag 1 = the value lives in an overflow chain
/// and the 12 value bytes are u32 total length + i64 first page. Branch cell: u16 key length, i64 child, key. A
/// branch's cell 0 has an empty key: it stands for "below the first separator". Overflow page: the payload
/// follows the header.
/// </summary>
internal static class Page
{
    public const int Size = 4096;
    public const int HeaderSize = 48;
    /// <summary>Room for slots and cells.</summary>
    public const int CellSpace = Size - HeaderSize;
    /// <summary>The largest cell (slot excluded): with cells of at most half the space, a full page plus one
    /// more cell always splits into two pages that fit (the longest prefix that fits leaves less than a page).</summary>
    public const int MaxCell = CellSpace / 2 - 2;
    public const int OverflowCapacity = Size - HeaderSize;
    public const int LeafCellHeader = 5;
    public const int BranchCellHeader = 10;
    public const int OverflowRefSize = 12;
    public const byte FlagOverflow = 1;
    public const uint Magic = 0x58495041; // "APIX"
    public const byte Version = 1;

    private const int OffMagic = 0, OffVersion = 4, OffKind = 5, OffLevel = 6, OffPage = 8, OffGeneration = 16,
        OffCount = 24, OffHeap = 26, OffCrc = 28, OffNext = 32, OffUsed = 40, OffReserved = 44;

    public static void Init(Span<byte> p, PageKind kind, int level, long page, long generation)
    {
        p[..Size].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(p[OffMagic..], Magic);
        p[OffVersion] = Version;
        p[OffKind] = (byte)kind;
        BinaryPrimitives.WriteUInt16LittleEndian(p[OffLevel..], (ushort)level);
        SetPageNumber(p, page);
        SetGeneration(p, generation);
        SetHeap(p, Size);
        SetNext(p, -1);
    }

    public static PageKind Kind(ReadOnlySpan<byte> p) => (PageKind)p[OffKind];

    public static int Level(ReadOnlySpan<byte> p) => BinaryPrimitives.ReadUInt16LittleEndian(p[OffLevel..]);

    public static long PageNumber(ReadOnlySpan<byte> p) => BinaryPrimitives.ReadInt64LittleEndian(p[OffPage..]);

    public static void SetPageNumber(Span<byte> p, long page) => BinaryPrimitives.WriteInt64LittleEndian(p[OffPage..], page);

    public static long Generation(ReadOnlySpan<byte> p) => BinaryPrimitives.ReadInt64LittleEndian(p[OffGeneration..]);

    public static void SetGeneration(Span<byte> p, long generation) => BinaryPrimitives.WriteInt64LittleEndian(p[OffGeneration..], generation);

    public static int Count(ReadOnlySpan<byte> p) => BinaryPrimitives.ReadUInt16LittleEndian(p[OffCount..]);

    private static void SetCount(Span<byte> p, int count) => BinaryPrimitives.WriteUInt16LittleEndian(p[OffCount..], (ushort)count);

    private static int Heap(ReadOnlySpan<byte> p) => BinaryPrimitives.ReadUInt16LittleEndian(p[OffHeap..]) is var h && h == 0 ? Size : h;

    // 4096 does not fit a u16: it is stored as 0.
    private static void SetHeap(Span<byte> p, int heap) => BinaryPrimitives.WriteUInt16LittleEndian(p[OffHeap..], (ushort)(heap == Size ? 0 : heap));

    public static uint StoredCrc(ReadOnlySpan<byte> p) => BinaryPrimitives.ReadUInt32LittleEndian(p[OffCrc..]);

    public static long Next(ReadOnlySpan<byte> p) => BinaryPrimitives.ReadInt64LittleEndian(p[OffNext..]);

    public static void SetNext(Span<byte> p, long next) => BinaryPrimitives.WriteInt64LittleEndian(p[OffNext..], next);

    public static int Used(ReadOnlySpan<byte> p) => (int)BinaryPrimitives.ReadUInt32LittleEndian(p[OffUsed..]);

    public static void SetUsed(Span<byte> p, int used) => BinaryPrimitives.WriteUInt32LittleEndian(p[OffUsed..], (uint)used);

    public static Span<byte> Payload(Span<byte> p) => p[HeaderSize..Size];

    /// <summary>The crc32c of the page as if its crc field were zero.</summary>
    public static uint ComputeCrc(ReadOnlySpan<byte> p, uint seed)
    {
        ReadOnlySpan<byte> zero = [0, 0, 0, 0];
        var c = Crc32C.Compute(p[..OffCrc], seed);
        c = Crc32C.Compute(zero, c);
        return Crc32C.Compute(p[(OffCrc + 4)..Size], c);
    }

    /// <summary>Writes the crc: the page is ready for the device.</summary>
    public static uint Seal(Span<byte> p, uint seed)
    {
        var crc = ComputeCrc(p, seed);
        BinaryPrimitives.WriteUInt32LittleEndian(p[OffCrc..], crc);
        return crc;
    }

    /// <summary>
    /// Every check a page read from the device must pass, so that code above can trust every offset in it. Returns
    /// null, or what is wrong (for a <see cref="PageCorruptionException"/> naming the page).
    /// </summary>
    public static string? Validate(ReadOnlySpan<byte> p, long page, uint seed, long maxGeneration)
    {
        var magic = BinaryPrimitives.ReadUInt32LittleEndian(p);
        if (magic != Magic)
        {
            return magic == 0 && p[..Size].IndexOfAnyExcept((byte)0) < 0
                ? "the page is all zeros (never written, or lost)"
                : $"bad magic 0x{magic:x8} (not an index page)";
        }
        if (p[OffVersion] != Version)
        {
            return $"unknown page format version {p[OffVersion]}";
        }
        var crc = ComputeCrc(p, seed);
        if (crc != StoredCrc(p))
        {
            return $"crc32c mismatch: stored {StoredCrc(p):x8}, page has {crc:x8} (damaged, torn, or another store's page)";
        }
        if (PageNumber(p) != page)
        {
            return $"the page says it is page {PageNumber(p)} (misdirected or stale write)";
        }
        var gen = Generation(p);
        if (gen < 1 || gen > maxGeneration)
        {
            return $"generation {gen} is outside 1..{maxGeneration} (a page from a later or lost commit)";
        }
        var kind = Kind(p);
        if (BinaryPrimitives.ReadUInt32LittleEndian(p[OffReserved..]) != 0)
        {
            return "reserved header bytes are not zero";
        }
        switch (kind)
        {
            case PageKind.Overflow:
                if (Level(p) != 0 || Count(p) != 0 || Used(p) is < 1 or > OverflowCapacity || Next(p) < -1)
                {
                    return $"overflow header out of range (level {Level(p)}, count {Count(p)}, used {Used(p)}, next {Next(p)})";
                }
                return null;
            case PageKind.Leaf or PageKind.Branch:
                break;
            default:
                return $"unknown page kind {(byte)kind}";
        }
        if ((kind == PageKind.Leaf) != (Level(p) == 0) || Used(p) != 0 || Next(p) != -1)
        {
            return $"{kind} header out of range (level {Level(p)}, used {Used(p)}, next {Next(p)})";
        }
        var count = Count(p);
        var heap = Heap(p);
        if (HeaderSize + 2 * count > heap || heap > Size)
        {
            return $"{count} slots overlap the cell heap at {heap}";
        }
        for (var i = 0; i < count; i++)
        {
            var off = Slot(p, i);
            if (off < heap || off + (kind == PageKind.Leaf ? LeafCellHeader : BranchCellHeader) > Size)
            {
                return $"slot {i} points to {off}, outside the cell heap {heap}..{Size}";
            }
            var len = CellLength(p, off);
            if (off + len > Size || len > MaxCell)
            {
                return $"cell {i} at {off} of {len} bytes runs past the page or the largest cell";
            }
            if (kind == PageKind.Leaf && (p[off + 2] & FlagOverflow) != 0 && BinaryPrimitives.ReadUInt16LittleEndian(p[(off + 3)..]) != OverflowRefSize)
            {
                return $"cell {i} has an overflow reference of the wrong size";
            }
            if (kind == PageKind.Leaf && (p[off + 2] & ~FlagOverflow) != 0)
            {
                return $"cell {i} has unknown flags {p[off + 2]:x2}";
            }
        }
        return null;
    }

    private static int Slot(ReadOnlySpan<byte> p, int i) => BinaryPrimitives.ReadUInt16LittleEndian(p[(HeaderSize + 2 * i)..]);

    private static int CellLength(ReadOnlySpan<byte> p, int off)
    {
        var klen = BinaryPrimitives.ReadUInt16LittleEndian(p[off..]);
        return Kind(p) == PageKind.Leaf
            ? LeafCellHeader + klen + BinaryPrimitives.ReadUInt16LittleEndian(p[(off + 3)..])
            : BranchCellHeader + klen;
    }

    public static ReadOnlySpan<byte> Cell(ReadOnlySpan<byte> p, int i)
    {
        var off = Slot(p, i);
        return p.Slice(off, CellLength(p, off));
    }

    public static ReadOnlySpan<byte> Key(ReadOnlySpan<byte> p, int i)
    {
        var off = Slot(p, i);
        var klen = BinaryPrimitives.ReadUInt16LittleEndian(p[off..]);
        return p.Slice(off + (Kind(p) == PageKind.Leaf ? LeafCellHeader : BranchCellHeader), klen);
    }

    public static long Child(ReadOnlySpan<byte> p, int i) => BinaryPrimitives.ReadInt64LittleEndian(p[(Slot(p, i) + 2)..]);

    public static void SetChild(Span<byte> p, int i, long child) => BinaryPrimitives.WriteInt64LittleEndian(p[(Slot(p, i) + 2)..], child);

    /// <summary>A leaf cell's value bytes (or its 12-byte overflow reference) and whether it is a reference.</summary>
    public static ReadOnlySpan<byte> LeafValue(ReadOnlySpan<byte> p, int i, out bool overflow)
    {
        var off = Slot(p, i);
        var klen = BinaryPrimitives.ReadUInt16LittleEndian(p[off..]);
        overflow = (p[off + 2] & FlagOverflow) != 0;
        var vlen = BinaryPrimitives.ReadUInt16LittleEndian(p[(off + 3)..]);
        return p.Slice(off + LeafCellHeader + klen, vlen);
    }

    public static (int Length, long First) OverflowRef(ReadOnlySpan<byte> value) =>
        ((int)BinaryPrimitives.ReadUInt32LittleEndian(value), BinaryPrimitives.ReadInt64LittleEndian(value[4..]));

    /// <summary>Slots plus live cells (holes left by removed cells not counted).</summary>
    public static int LiveBytes(ReadOnlySpan<byte> p)
    {
        var n = Count(p);
        var total = 2 * n;
        for (var i = 0; i < n; i++)
        {
            total += CellLength(p, Slot(p, i));
        }
        return total;
    }

    public static int LeafCellSize(int keyLength, int valueLength) => LeafCellHeader + keyLength + valueLength;

    public static int WriteLeafCell(Span<byte> cell, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, bool overflow)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(cell, (ushort)key.Length);
        cell[2] = overflow ? FlagOverflow : (byte)0;
        BinaryPrimitives.WriteUInt16LittleEndian(cell[3..], (ushort)value.Length);
        key.CopyTo(cell[LeafCellHeader..]);
        value.CopyTo(cell[(LeafCellHeader + key.Length)..]);
        return LeafCellHeader + key.Length + value.Length;
    }

    public static int WriteBranchCell(Span<byte> cell, ReadOnlySpan<byte> key, long child)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(cell, (ushort)key.Length);
        BinaryPrimitives.WriteInt64LittleEndian(cell[2..], child);
        key.CopyTo(cell[BranchCellHeader..]);
        return BranchCellHeader + key.Length;
    }

    /// <summary>Leaf: the index of the first key ≥ <paramref name="key"/>, and whether it is equal.</summary>
    public static int Search(ReadOnlySpan<byte> p, ReadOnlySpan<byte> key, out bool found)
    {
        int lo = 0, hi = Count(p);
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (Key(p, mid).SequenceCompareTo(key) < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        found = lo < Count(p) && Key(p, lo).SequenceEqual(key);
        return lo;
    }

    /// <summary>Branch: the child whose range holds <paramref name="key"/> (the last separator ≤ key; cell 0's
    /// empty key stands for minus infinity).</summary>
    public static int ChildIndex(ReadOnlySpan<byte> p, ReadOnlySpan<byte> key)
    {
        int lo = 1, hi = Count(p);
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (Key(p, mid).SequenceCompareTo(key) <= 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo - 1;
    }

    /// <summary>Inserts a cell at slot <paramref name="index"/> if it fits (compacting holes first if needed).</summary>
    public static bool TryInsert(Span<byte> p, int index, ReadOnlySpan<byte> cell)
    {
        var count = Count(p);
        var need = cell.Length + 2;
        if (Heap(p) - (HeaderSize + 2 * count) < need)
        {
            if (CellSpace - LiveBytes(p) < need)
            {
                return false;
            }
            Compact(p);
        }
        var heap = Heap(p) - cell.Length;
        cell.CopyTo(p[heap..]);
        SetHeap(p, heap);
        var slots = p[HeaderSize..];
        slots[(2 * index)..(2 * count)].CopyTo(slots[(2 * index + 2)..]);
        BinaryPrimitives.WriteUInt16LittleEndian(slots[(2 * index)..], (ushort)heap);
        SetCount(p, count + 1);
        return true;
    }

    /// <summary>Removes slot <paramref name="index"/>; its cell's bytes become a hole until the next compaction.</summary>
    public static void RemoveAt(Span<byte> p, int index)
    {
        var count = Count(p);
        var slots = p[HeaderSize..];
        slots[(2 * index + 2)..(2 * count)].CopyTo(slots[(2 * index)..]);
        SetCount(p, count - 1);
        if (count == 1)
        {
            SetHeap(p, Size);
        }
    }

    /// <summary>Repacks the cells against the end of the page (removes holes).</summary>
    public static void Compact(Span<byte> p)
    {
        Span<byte> copy = stackalloc byte[Size];
        p[..Size].CopyTo(copy);
        var count = Count(p);
        var heap = Size;
        for (var i = 0; i < count; i++)
        {
            var cell = Cell(copy, i);
            heap -= cell.Length;
            cell.CopyTo(p[heap..]);
            BinaryPrimitives.WriteUInt16LittleEndian(p[(HeaderSize + 2 * i)..], (ushort)heap);
        }
        p[(HeaderSize + 2 * count)..heap].Clear();
        SetHeap(p, heap);
    }

    /// <summary>
    /// Splits a full page while inserting <paramref name="cell"/> at <paramref name="index"/>: the cells, in order,
    /// go to <paramref name="left"/> (the same page) and <paramref name="right"/> (a fresh page initialised with the
    /// same kind and level). Leaves get the shortest separator that tells the halves apart; a branch's first right
    /// cell moves up as the separator and stays in the right page with an empty key. Returns the separator.
    /// </summary>
    public static byte[] SplitInsert(Span<byte> left, Span<byte> right, int index, ReadOnlySpan<byte> cell)
    {
        Span<byte> old = stackalloc byte[Size];
        left[..Size].CopyTo(old);
        var n = Count(old);
        var leaf = Kind(old) == PageKind.Leaf;
        // Sizes with slots of the n + 1 cells in order; cell index k of the sequence is old cell k or k - 1.
        Span<int> sizes = stackalloc int[n + 1];
        var total = 0;
        for (var k = 0; k <= n; k++)
        {
            sizes[k] = 2 + (k == index ? cell.Length : Cell(old, k < index ? k : k - 1).Length);
            total += sizes[k];
        }
        int m;
        if (leaf && index == n)
        {
            // Appending at the end (ascending inserts): keep the left page full.
            m = n;
        }
        else
        {
            // The most even cut where both halves fit (one exists: see MaxCell).
            m = -1;
            var best = int.MaxValue;
            var prefix = 0;
            for (var k = 1; k <= n; k++)
            {
                prefix += sizes[k - 1];
                var rest = total - prefix;
                if (prefix <= CellSpace && rest <= CellSpace && Math.Abs(prefix - rest) < best)
                {
                    best = Math.Abs(prefix - rest);
                    m = k;
                }
            }
            if (m < 0)
            {
                throw new InvalidOperationException($"no split of {n + 1} cells ({total} bytes) fits two pages");
            }
        }

        Init(left, Kind(old), Level(old), PageNumber(old), Generation(old));
        for (var k = 0; k < m; k++)
        {
            Append(left, k == index ? cell : Cell(old, k < index ? k : k - 1));
        }
        byte[] separator;
        var firstRight = m == index ? cell : Cell(old, m < index ? m : m - 1);
        if (leaf)
        {
            var lastLeft = Key(left, m - 1);
            var firstKey = firstRight.Slice(LeafCellHeader, BinaryPrimitives.ReadUInt16LittleEndian(firstRight));
            // The shortest prefix of the right's first key that is greater than the left's last key.
            var common = lastLeft.CommonPrefixLength(firstKey);
            separator = firstKey[..Math.Min(firstKey.Length, common + 1)].ToArray();
        }
        else
        {
            separator = firstRight.Slice(BranchCellHeader, BinaryPrimitives.ReadUInt16LittleEndian(firstRight)).ToArray();
        }
        Span<byte> first = stackalloc byte[BranchCellHeader];
        for (var k = m; k <= n; k++)
        {
            var c = k == index ? cell : Cell(old, k < index ? k : k - 1);
            if (!leaf && k == m)
            {
                WriteBranchCell(first, [], BinaryPrimitives.ReadInt64LittleEndian(c[2..]));
                Append(right, first);
            }
            else
            {
                Append(right, c);
            }
        }
        return separator;
    }

    /// <summary>Adds a cell after the last one; the caller has checked that it fits.</summary>
    public static void Append(Span<byte> p, ReadOnlySpan<byte> cell)
    {
        if (!TryInsert(p, Count(p), cell))
        {
            throw new InvalidOperationException($"cell of {cell.Length} bytes does not fit page {PageNumber(p)}");
        }
    }

    /// <summary>Removes cell <paramref name="index"/> of a branch, keeping cell 0's key empty.</summary>
    public static void RemoveBranchEntry(Span<byte> p, int index)
    {
        RemoveAt(p, index);
        if (index == 0 && Count(p) > 0 && Key(p, 0).Length > 0)
        {
            var child = Child(p, 0);
            RemoveAt(p, 0);
            Span<byte> first = stackalloc byte[BranchCellHeader];
            WriteBranchCell(first, [], child);
            TryInsert(p, 0, first);
        }
    }
}
