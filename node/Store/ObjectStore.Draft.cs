using Appliance.Platform.Checksums;
using Appliance.Platform.Devices;
using Appliance.Store.Format;
using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>
    /// Prepares one transaction: checks every rule against a private view of the objects it touches, reads what a
    /// partial-block update needs, allocates blocks and emits the redo entries. Nothing shared changes until
    /// <see cref="Publish"/> (except allocations, returned by <see cref="RollbackAsync"/>, and the early writes of
    /// long data into those fresh blocks, which no one else sees), so a transaction that fails here has no effect. Runs
    /// holding the ordering of every collection the transaction names: the objects it reads cannot change under it
    /// (only transactions ordered on their collection change them, and those before it have been published). Other
    /// collections change meanwhile, so the collection table is only read under the state lock.
    /// </summary>
    private sealed partial class Draft(ObjectStore s)
    {
        private readonly Dictionary<string, CollDraft> _colls = new(StringComparer.Ordinal);
        private readonly Dictionary<(string, ObjectId), ObjDraft> _objs = [];
        /// <summary>Block contents written earlier in this transaction (by device block), for later reads in it.</summary>
        private readonly Dictionary<long, ReadOnlyMemory<byte>> _txnData = [];
        private readonly List<long> _allocated = [];
        private readonly Dictionary<long, int> _cowIndex = [];

        public ByteWriter Redo { get; } = new(512);

        public List<CowBlock> Cow { get; } = [];

        private sealed class CollDraft
        {
            public bool Exists;
            public long Objects;
        }

        private sealed class ObjDraft
        {
            private List<BlockRef>? _blocks;
            private Dictionary<string, byte[]>? _xattrs;
            public bool Exists;
            public long Size;
            /// <summary>The object as it was before this transaction (null once removed here). Its block map and
            /// xattrs are copied on first use: a split makes a draft of every object it moves, most never read.</summary>
            public Onode? Base;
            public bool OmapCleared;
            public Dictionary<string, byte[]?> OmapChanges = new(StringComparer.Ordinal);
            /// <summary>Ranges removed from the base's omap in this transaction (changes in them are dropped from
            /// <see cref="OmapChanges"/>, later ones are added there): the base's keys are in the index, not read
            /// unless a clone needs them.</summary>
            public List<(string From, string To)> OmapRemovedRanges = [];

            public List<BlockRef> Blocks => _blocks ??= Base is null ? [] : [.. Base.Blocks];

            public Dictionary<string, byte[]> Xattrs => _xattrs ??= Base is null ? new(StringComparer.Ordinal) : new(Base.Xattrs, StringComparer.Ordinal);

            public void Reset()
            {
                Size = 0;
                _blocks = [];
                _xattrs = new(StringComparer.Ordinal);
                Base = null;
                OmapCleared = false;
                OmapChanges.Clear();
                OmapRemovedRanges.Clear();
            }
        }

        /// <summary>The objects and collection ranges this draft read, for its publication (<see cref="TxnApply"/>).</summary>
        public DraftSource Source { get; } = new();

        /// <summary>Writes of this transaction's copy-on-write data already on their way to its fresh blocks (long
        /// writes start while the draft is still being prepared); null when none.</summary>
        public List<Task>? Early { get; private set; }

        // For each object, the index of the last operation that names it (an early write is safe only from the last:
        // nothing later in the transaction changes those blocks again).
        private Dictionary<(string, ObjectId), int>? _lastTouch;
        private int _opIndex;

        /// <summary>Gives back the blocks allocated so far; first waits for early writes into them (a block must not
        /// be handed to someone else while our write to it may still land).</summary>
        public async Task RollbackAsync()
        {
            if (Early is not null)
            {
                try
                {
                    await Task.WhenAll(Early);
                }
                catch (Exception)
                {
                    // The blocks were never referenced: what landed in them does not matter.
                }
            }
            if (_allocated.Count > 0)
            {
                s._alloc.Release(_allocated);
                _allocated.Clear();
            }
        }

        public async Task RunAsync(Transaction txn)
        {
            _lastTouch = LastTouch(txn.Ops);
            _opIndex = -1;
            foreach (var op in txn.Ops)
            {
                _opIndex++;
                switch (op)
                {
                    case Transaction.CreateCollectionOp o:
                    {
                        var cd = Coll(o.Collection);
                        if (cd.Exists)
                        {
                            throw new CollectionExistsException(o.Collection);
                        }
                        cd.Exists = true;
                        cd.Objects = 0;
                        Meta.Redo.CollCreate(Redo, o.Collection);
                        break;
                    }
                    case Transaction.RemoveCollectionOp o:
                    {
                        var cd = Coll(o.Collection);
                        if (!cd.Exists)
                        {
                            throw new CollectionNotFoundException(o.Collection);
                        }
                        if (cd.Objects != 0)
                        {
                            throw new CollectionNotEmptyException(o.Collection, cd.Objects);
                        }
                        cd.Exists = false;
                        Meta.Redo.CollRemove(Redo, o.Collection);
                        break;
                    }
                    case Transaction.TouchOp o:
                        await ObjAsync(o.Collection, o.Name, create: true);
                        break;
                    case Transaction.WriteOp o:
                        await WriteAsync(o.Collection, o.Name, o.Offset, o.Data.Length, o.Data, zero: false, o.Aligned);
                        break;
                    case Transaction.ZeroOp o:
                        await WriteAsync(o.Collection, o.Name, o.Offset, o.Length, default, zero: true);
                        break;
                    case Transaction.TruncateOp o:
                        await TruncateAsync(o.Collection, o.Name, o.Size);
                        break;
                    case Transaction.RemoveOp o:
                        await RemoveAsync(o.Collection, o.Name);
                        break;
                    case Transaction.CloneOp o:
                        await CloneAsync(o.Collection, o.Source, o.Destination);
                        break;
                    case Transaction.CloneRangeOp o:
                    {
                        var src = await ObjAsync(o.Collection, o.Source, create: false);
                        var data = await ReadRangeAsync(o.Collection, o.Source, src, o.SourceOffset, checked((int)o.Length));
                        await WriteAsync(o.Collection, o.Destination, o.DestinationOffset, o.Length, data, zero: false);
                        break;
                    }
                    case Transaction.SetXattrOp o:
                    {
                        var od = await ObjAsync(o.Collection, o.Name, create: true);
                        od.Xattrs[o.Key] = o.Value.ToArray();
                        Meta.Redo.XattrSet(Redo, o.Collection, o.Name, o.Key, o.Value.Span);
                        break;
                    }
                    case Transaction.RemoveXattrOp o:
                    {
                        var od = await ObjAsync(o.Collection, o.Name, create: false);
                        od.Xattrs.Remove(o.Key);
                        Meta.Redo.XattrRemove(Redo, o.Collection, o.Name, o.Key);
                        break;
                    }
                    case Transaction.OmapSetOp o:
                    {
                        var od = await ObjAsync(o.Collection, o.Name, create: true);
                        od.OmapChanges[o.Key] = o.Value.ToArray();
                        Meta.Redo.OmapSet(Redo, o.Collection, o.Name, o.Key, o.Value.Span);
                        break;
                    }
                    case Transaction.OmapRemoveOp o:
                    {
                        var od = await ObjAsync(o.Collection, o.Name, create: false);
                        od.OmapChanges[o.Key] = null;
                        Meta.Redo.OmapRemove(Redo, o.Collection, o.Name, o.Key);
                        break;
                    }
                    case Transaction.OmapRemoveRangeOp o:
                    {
                        var od = await ObjAsync(o.Collection, o.Name, create: false);
                        foreach (var k in od.OmapChanges.Keys.Where(k => InRange(k, o.From, o.To)).ToList())
                        {
                            od.OmapChanges[k] = null;
                        }
                        if (!od.OmapCleared && od.Base is not null && string.CompareOrdinal(o.From, o.To) < 0)
                        {
                            od.OmapRemovedRanges.Add((o.From, o.To));
                        }
                        Meta.Redo.OmapRemoveRange(Redo, o.Collection, o.Name, o.From, o.To);
                        break;
                    }
                    case Transaction.MoveOp o:
                        await MoveAsync(o.Collection, o.Name, o.DestinationCollection, o.Destination);
                        break;
                    case Transaction.SplitCollectionOp o:
                        await SplitAsync(o.Collection, o.Bits, o.Match, o.Destination);
                        break;
                    case Transaction.OmapClearOp o:
                    {
                        var od = await ObjAsync(o.Collection, o.Name, create: false);
                        od.OmapCleared = true;
                        od.OmapChanges.Clear();
                        od.OmapRemovedRanges.Clear();
                        Meta.Redo.OmapClear(Redo, o.Collection, o.Name);
                        break;
                    }
                    default:
                        throw new InvalidOperationException($"unknown operation {op.GetType().Name}");
                }
            }
        }

        private static bool InRange(string key, string from, string to) =>
            string.CompareOrdinal(key, from) >= 0 && string.CompareOrdinal(key, to) < 0;

        private static Dictionary<(string, ObjectId), int>? LastTouch(IReadOnlyList<Transaction.Op> ops)
        {
            if (ops.Count == 1)
            {
                return null; // a single operation is always the last
            }
            var last = new Dictionary<(string, ObjectId), int>();
            for (var i = 0; i < ops.Count; i++)
            {
                if (ops[i] is Transaction.MoveOp or Transaction.SplitCollectionOp)
                {
                    // An object can change its name here and be written again under the new one: no operation is
                    // known to be an object's last, so no early writes in this transaction.
                    return [];
                }
                ObjectId[] names = ops[i] switch
                {
                    Transaction.CloneOp o => [o.Source, o.Destination],
                    Transaction.CloneRangeOp o => [o.Source, o.Destination],
                    Transaction.WriteOp o => [o.Name],
                    Transaction.ZeroOp o => [o.Name],
                    Transaction.TruncateOp o => [o.Name],
                    Transaction.RemoveOp o => [o.Name],
                    _ => [],
                };
                foreach (var name in names)
                {
                    last[(ops[i].Collection, name)] = i;
                }
            }
            return last;
        }

        private CollDraft Coll(string c)
        {
            if (!_colls.TryGetValue(c, out var cd))
            {
                // The table is read under the state lock (a transaction on other collections may create or remove
                // one meanwhile); this collection's entry changes only by transactions ordered on it.
                lock (s._stateLock)
                {
                    cd = s._meta.Collections.TryGetValue(c, out var n) ? new CollDraft { Exists = true, Objects = n } : new CollDraft();
                }
                _colls.Add(c, cd);
            }
            return cd;
        }

        private void SetSize(string c, ObjectId o, ObjDraft od, long size)
        {
            var count = (int)((size + B - 1) / B);
            if (count > od.Blocks.Count)
            {
                od.Blocks.AddRange(Enumerable.Repeat(default(BlockRef), count - od.Blocks.Count));
            }
            else
            {
                od.Blocks.RemoveRange(count, od.Blocks.Count - count);
            }
            od.Size = size;
            Meta.Redo.ObjSize(Redo, c, o, size);
        }

        /// <summary>The current content of block <paramref name="index"/> as this transaction sees it.</summary>
        private async Task<byte[]> ReadBlockAsync(string c, ObjectId o, ObjDraft od, long index)
        {
            var b = od.Blocks[(int)index];
            if (b.IsHole)
            {
                return new byte[B];
            }
            if (_txnData.TryGetValue(b.Phys, out var mine))
            {
                return mine.ToArray();
            }
            lock (s._stateLock)
            {
                if (s._overlay.TryGetValue(b.Phys, out var pending))
                {
                    return pending.ToArray();
                }
            }
            // Not in the overlay, so the device holds it, and nothing rewrites it while we hold the ordering of its
            // collection: only published transactions put data in the overlay (their in-place writes come from
            // there), and only those ordered on this collection can free the block for reuse.
            using var buf = new AlignedBuffer(B, B);
            await s._device.ReadAsync(b.Phys * B, buf.Memory);
            var crc = Crc32C.Compute(buf.GetSpan());
            if (crc != b.Crc)
            {
                throw new ChecksumException(c, o.ToString(), index, b.Phys * B, b.Crc, crc);
            }
            return buf.GetSpan().ToArray();
        }

        private async Task<byte[]> ReadRangeAsync(string c, ObjectId o, ObjDraft od, long offset, int length)
        {
            var result = new byte[length];
            var end = Math.Min(offset + length, od.Size);
            for (var pos = offset; pos < end;)
            {
                var index = pos / B;
                var within = (int)(pos % B);
                var n = (int)Math.Min(B - within, end - pos);
                var block = await ReadBlockAsync(c, o, od, index);
                block.AsSpan(within, n).CopyTo(result.AsSpan((int)(pos - offset)));
                pos += n;
            }
            return result;
        }

        /// <summary>A write (or, with <paramref name="zero"/>, a zeroing) of [offset, offset+length). Writes shorter
        /// than <see cref="StoreOptions.DeferredWriteMax"/>, and zeroings, are deferred: the data goes into the record
        /// and later in place, into the blocks the object already has (fresh ones for holes). Longer writes go
        /// copy-on-write to fresh blocks (deferred after all when the store is full and the write is short). Zeroed
        /// whole blocks become holes.</summary>
        private async Task WriteAsync(string c, ObjectId o, long offset, long length, ReadOnlyMemory<byte> data, bool zero, bool aligned = false)
        {
            var od = await ObjAsync(c, o, create: true);
            if (length == 0)
            {
                return;
            }
            var end = offset + length;
            if (end > od.Size)
            {
                SetSize(c, o, od, end);
            }
            var cow = !zero && length >= s._options.DeferredWriteMax;
            var first = offset / B;
            var last = (end - 1) / B;
            var count = (int)(last - first + 1);
            // Whole blocks of a write are slices of the transaction's own copy of the data (no copy here); their
            // crcs are computed side by side. Partial blocks are read, merged and copied.
            var contents = new ReadOnlyMemory<byte>[count];
            var present = new bool[count];
            var pinned = new bool[count];
            var crcs = new uint[count];
            var wholeFirst = offset % B == 0 ? 0 : 1;
            var wholeEnd = end % B == 0 ? count : count - 1;
            // A long write's whole blocks start to the device while this draft is still prepared (their crcs are
            // computed piece by piece beside the writes): only from the last operation naming the object, so nothing
            // later in the transaction changes those blocks again.
            var early = cow && (wholeEnd - wholeFirst) * B >= StreamCowBytes
                && (_lastTouch is null || (_lastTouch.TryGetValue((c, o), out var lastOp) && lastOp == _opIndex));
            if (!zero && wholeEnd > wholeFirst && !early)
            {
                var from = (int)((first + wholeFirst) * B - offset);
                Crc32C.ComputeBlocks(data.Span.Slice(from, (wholeEnd - wholeFirst) * B), B, crcs.AsSpan(wholeFirst));
            }
            var presentCount = 0;
            var holes = 0;
            for (var k = 0; k < count; k++)
            {
                var index = first + k;
                var blockStart = index * B;
                var lo = (int)(Math.Max(offset, blockStart) - blockStart);
                var hi = (int)(Math.Min(end, blockStart + B) - blockStart);
                var whole = lo == 0 && hi == B;
                if (zero && whole)
                {
                    continue; // becomes a hole
                }
                if (whole)
                {
                    contents[k] = data.Slice((int)(blockStart - offset), B);
                    pinned[k] = aligned;
                }
                else
                {
                    var content = await ReadBlockAsync(c, o, od, index);
                    if (zero)
                    {
                        content.AsSpan(lo, hi - lo).Clear();
                        if (content.AsSpan().IndexOfAnyExcept((byte)0) < 0)
                        {
                            continue;
                        }
                    }
                    else
                    {
                        data.Span.Slice((int)(blockStart + lo - offset), hi - lo).CopyTo(content.AsSpan(lo));
                    }
                    contents[k] = content;
                    crcs[k] = Crc32C.Compute(content);
                }
                present[k] = true;
                presentCount++;
                if (od.Blocks[(int)index].IsHole)
                {
                    holes++;
                }
            }
            var need = cow ? presentCount : holes;
            var fresh = new List<long>(need);
            if (need > 0 && !s._alloc.TryAllocate(need, fresh))
            {
                // A short overwrite on a full store still fits where the data is: written in place through the
                // journal (as writes below DeferredWriteMax always are), needing fresh blocks for holes only.
                if (cow && length < StreamCowBytes && (holes == 0 || s._alloc.TryAllocate(holes, fresh)))
                {
                    cow = false;
                }
                else
                {
                    throw new NoSpaceException(
                        $"{s._device.Name}: out of space: the transaction needs {need} more blocks of 4 KiB and {s._alloc.Free} are free; remove objects (space is reusable once the removal is durable)");
                }
            }
            _allocated.AddRange(fresh);
            var physOf = new long[count];
            var next = 0;
            for (var k = 0; k < count; k++)
            {
                if (present[k])
                {
                    var cur = od.Blocks[(int)(first + k)];
                    physOf[k] = cow || cur.IsHole ? fresh[next++] : cur.Phys;
                }
            }
            if (early)
            {
                StartEarlyWrites(data[(int)((first + wholeFirst) * B - offset)..], physOf.AsSpan(wholeFirst, wholeEnd - wholeFirst),
                    crcs.AsSpan(wholeFirst), aligned);
            }
            var refs = new BlockRef[count];
            for (var k = 0; k < count; k++)
            {
                var index = (int)(first + k);
                if (!present[k])
                {
                    refs[k] = default;
                }
                else
                {
                    refs[k] = new BlockRef(physOf[k], crcs[k]);
                    PutBlock(physOf[k], contents[k], crcs[k], cow, pinned[k], started: early && k >= wholeFirst && k < wholeEnd);
                }
                od.Blocks[index] = refs[k];
            }
            Meta.Redo.Blocks(Redo, c, o, first, refs);
        }

        /// <summary>
        /// Starts writing whole blocks (<paramref name="data"/> from its start, one block per entry of
        /// <paramref name="phys"/>) to their fresh device blocks, in pieces of consecutive blocks (at most
        /// <see cref="PipelineCopyBlocks"/>), and fills in their crcs. A pinned, aligned source is written as it is
        /// and checksummed while the write runs; any other is copied piece by piece into aligned memory and
        /// checksummed from the copy (still in cache), each piece's write starting before the next is copied.
        /// </summary>
        private void StartEarlyWrites(ReadOnlyMemory<byte> data, ReadOnlySpan<long> phys, Span<uint> crcs, bool aligned)
        {
            Early ??= [];
            Interlocked.Add(ref s._earlyBlocks, phys.Length);
            for (var k = 0; k < phys.Length;)
            {
                var n = 1;
                while (k + n < phys.Length && n < PipelineCopyBlocks && phys[k + n] == phys[k] + n)
                {
                    n++;
                }
                var source = data.Slice(k * B, n * B);
                if (aligned)
                {
                    Early.Add(s.DeviceWriteAsync(phys[k] * B, source).AsTask());
                    Crc32C.ComputeBlocks(source.Span, B, crcs.Slice(k, n));
                }
                else
                {
                    var buf = BufferPool.Rent(n * B);
                    var copy = buf.GetSpan()[..(n * B)];
                    source.Span.CopyTo(copy);
                    Crc32C.ComputeBlocks(copy, B, crcs.Slice(k, n));
                    Early.Add(s.WritePieceAsync(phys[k] * B, buf, n * B));
                }
                k += n;
            }
        }

        /// <summary>Records new content for a device block. A block written copy-on-write earlier in this
        /// transaction stays copy-on-write (its content is replaced): one block never has both a copy-on-write and
        /// a deferred write, whose overlay entries would race.</summary>
        private void PutBlock(long phys, ReadOnlyMemory<byte> content, uint crc, bool cow, bool pinned = false, bool started = false)
        {
            if (_cowIndex.TryGetValue(phys, out var i))
            {
                // Never an early-written block: those come from the last operation on their object.
                Cow[i] = new CowBlock(phys, content, crc, pinned);
            }
            else if (cow)
            {
                _cowIndex[phys] = Cow.Count;
                Cow.Add(new CowBlock(phys, content, crc, pinned, started));
            }
            else
            {
                Meta.Redo.Data(Redo, phys, content.Span);
            }
            _txnData[phys] = content;
        }

        private async Task TruncateAsync(string c, ObjectId o, long size)
        {
            var od = await ObjAsync(c, o, create: true);
            if (size < od.Size && size % B != 0 && !od.Blocks[(int)(size / B)].IsHole)
            {
                // Bytes past the end of the last block must read as zeros if the object grows again.
                var index = size / B;
                var content = await ReadBlockAsync(c, o, od, index);
                content.AsSpan((int)(size % B)).Clear();
                var phys = od.Blocks[(int)index].Phys;
                var crc = Crc32C.Compute(content);
                var r = new BlockRef(phys, crc);
                PutBlock(phys, content, crc, cow: false);
                od.Blocks[(int)index] = r;
                Meta.Redo.Blocks(Redo, c, o, index, [r]);
            }
            if (size != od.Size)
            {
                SetSize(c, o, od, size);
            }
        }

        private async Task CloneAsync(string c, ObjectId source, ObjectId destination)
        {
            var src = await ObjAsync(c, source, create: false);
            if (source == destination)
            {
                return;
            }
            var size = src.Size;
            var blocks = src.Blocks.ToArray();
            var contents = new byte[]?[blocks.Length];
            for (var i = 0; i < blocks.Length; i++)
            {
                if (!blocks[i].IsHole)
                {
                    contents[i] = await ReadBlockAsync(c, source, src, i);
                }
            }
            var xattrs = src.Xattrs.ToArray();
            var omap = await EffectiveOmapAsync(src);

            if ((await LookupAsync(c, destination)).Exists)
            {
                await RemoveAsync(c, destination);
            }
            var dst = await ObjAsync(c, destination, create: true);
            if (size > 0)
            {
                SetSize(c, destination, dst, size);
                var need = contents.Count(x => x is not null);
                var fresh = new List<long>(need);
                if (need > 0 && !s._alloc.TryAllocate(need, fresh))
                {
                    throw new NoSpaceException(
                        $"{s._device.Name}: out of space: cloning {c}/{source} needs {need} blocks of 4 KiB and {s._alloc.Free} are free");
                }
                _allocated.AddRange(fresh);
                var refs = new BlockRef[blocks.Length];
                var next = 0;
                for (var i = 0; i < blocks.Length; i++)
                {
                    if (contents[i] is { } content)
                    {
                        var phys = fresh[next++];
                        var crc = Crc32C.Compute(content);
                        refs[i] = new BlockRef(phys, crc);
                        PutBlock(phys, content, crc, cow: true);
                    }
                    dst.Blocks[i] = refs[i];
                }
                Meta.Redo.Blocks(Redo, c, destination, 0, refs);
            }
            foreach (var (k, v) in xattrs)
            {
                dst.Xattrs[k] = v;
                Meta.Redo.XattrSet(Redo, c, destination, k, v);
            }
            foreach (var (k, v) in omap)
            {
                dst.OmapChanges[k] = v;
                Meta.Redo.OmapSet(Redo, c, destination, k, v);
            }
        }

        /// <summary>The object's omap as this transaction left it so far: the base's entries (from the index) not
        /// cleared, not in a removed range and not changed here, then the changes. Ordinal order.</summary>
        private async Task<List<KeyValuePair<string, byte[]>>> EffectiveOmapAsync(ObjDraft od)
        {
            var result = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
            if (!od.OmapCleared && od.Base is { HasOmap: true } b)
            {
                foreach (var (k, v) in await s.OmapScanAsync(b.Nid, null, null, int.MaxValue, CancellationToken.None))
                {
                    if (!od.OmapChanges.ContainsKey(k) && !od.OmapRemovedRanges.Any(r => InRange(k, r.From, r.To)))
                    {
                        result[k] = v;
                    }
                }
            }
            foreach (var (k, v) in od.OmapChanges)
            {
                if (v is not null)
                {
                    result[k] = v;
                }
            }
            return [.. result];
        }
    }
}
