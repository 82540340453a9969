using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Appliance.Crush.Hashing;
using Appliance.Crush.Model;

namespace Appliance.Crush.Mapping;

/// <summary>
/// Maps an input x through a rule to a list of devices, bit for bit as Ceph's crush_do_rule does. Built once from a
/// compiled <see cref="CrushMap"/> into flat arrays; immutable, so one mapper serves any number of threads, each with
/// its own <see cref="CrushWorkspace"/>. <see cref="Map"/> does not allocate.
/// </summary>
public sealed class CrushMapper
{
    /// <summary>Ceph's CRUSH_ITEM_NONE: "no device for this position" in indep results.</summary>
    public const int ItemNone = 0x7fffffff;
    internal const int ItemUndef = 0x7ffffffe;

    private readonly int[] _bAlg;     // 0 = no bucket at this index
    private readonly int[] _bId;
    private readonly int[] _bType;
    private readonly int[] _bSize;
    private readonly int[] _bStart;   // into _items, _weights, _aux
    private readonly int[] _bNodeStart;
    private readonly int[] _bNumNodes;
    private readonly int[] _items;
    private readonly uint[] _weights;
    private readonly uint[] _aux;     // list: sum weights; straw: straw lengths
    private readonly double[] _invWeights; // straw2: 1.0 / weight, for the exact fast division
    private readonly uint[] _padItems;     // items again, each bucket's run padded to a multiple of 8 (vector hashing)
    private readonly int[] _bPadStart;
    private readonly uint[] _nodes;   // tree node weights
    private readonly Dictionary<int, CrushStep[]> _rules;
    private readonly int _maxDevices;
    private readonly int _chooseLocalTries;
    private readonly int _chooseLocalFallbackTries;
    private readonly int _chooseTotalTries;
    private readonly int _descendOnce;
    private readonly int _varyR;
    private readonly int _stable;

    public CrushMapper(CrushMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        SourceMap = map;
        var buckets = map.BucketArray;
        var n = buckets.Length;
        _bAlg = new int[n];
        _bId = new int[n];
        _bType = new int[n];
        _bSize = new int[n];
        _bStart = new int[n];
        _bNodeStart = new int[n];
        _bNumNodes = new int[n];
        var totalItems = 0;
        var totalNodes = 0;
        foreach (var b in buckets)
        {
            if (b is not null)
            {
                totalItems += b.ItemsArray.Length;
                totalNodes += b.NumNodes;
            }
        }
        _items = new int[totalItems];
        _weights = new uint[totalItems];
        _aux = new uint[totalItems];
        _invWeights = new double[totalItems];
        _bPadStart = new int[n];
        var padTotal = 0;
        foreach (var b in buckets)
        {
            if (b is not null)
            {
                padTotal += (b.ItemsArray.Length + 7) & ~7;
            }
        }
        _padItems = new uint[padTotal];
        var padPos = 0;
        _nodes = new uint[totalNodes];
        int pos = 0, nodePos = 0;
        for (var i = 0; i < n; i++)
        {
            var b = buckets[i];
            if (b is null)
            {
                continue;
            }
            _bAlg[i] = (int)b.Alg;
            _bId[i] = b.Id;
            _bType[i] = b.TypeId;
            _bSize[i] = b.ItemsArray.Length;
            _bStart[i] = pos;
            b.ItemsArray.CopyTo(_items, pos);
            b.ItemWeights.CopyTo(_weights, pos);
            for (var k = 0; k < b.ItemWeights.Length; k++)
            {
                _invWeights[pos + k] = b.ItemWeights[k] == 0 ? 0 : 1.0 / b.ItemWeights[k];
                _padItems[padPos + k] = (uint)b.ItemsArray[k];
            }
            _bPadStart[i] = padPos;
            padPos += (b.ItemsArray.Length + 7) & ~7;
            if (b.SumWeights is not null)
            {
                b.SumWeights.CopyTo(_aux, pos);
            }
            if (b.Straws is not null)
            {
                b.Straws.CopyTo(_aux, pos);
            }
            if (b.NodeWeights is not null)
            {
                _bNodeStart[i] = nodePos;
                _bNumNodes[i] = b.NumNodes;
                b.NodeWeights.CopyTo(_nodes, nodePos);
                nodePos += b.NumNodes;
            }
            pos += b.ItemsArray.Length;
        }
        _rules = map.Rules.ToDictionary(r => r.Id, r => r.StepsArray);
        _maxDevices = map.MaxDevices;
        var t = map.Tunables;
        _chooseLocalTries = t.ChooseLocalTries;
        _chooseLocalFallbackTries = t.ChooseLocalFallbackTries;
        _chooseTotalTries = t.ChooseTotalTries;
        _descendOnce = t.ChooseLeafDescendOnce;
        _varyR = t.ChooseLeafVaryR;
        _stable = t.ChooseLeafStable;
    }

    // 2^48 - crush_ln(u) for every 16-bit u (512 KiB, built once): one load instead of the table arithmetic in the
    // straw2 loop.
    private static readonly ulong[] NegLn = BuildNegLn();

    private static ulong[] BuildNegLn()
    {
        var t = new ulong[65536];
        for (uint u = 0; u < t.Length; u++)
        {
            t[u] = 0x1000000000000UL - CrushHash.Ln(u);
        }
        return t;
    }

    /// <summary>One straw2 draw: (crush_ln(u) - 2^48) / wt truncated toward zero, exactly (inv = 1.0 / wt).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long Draw(uint u, uint wt, double inv)
    {
        var n = Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(NegLn), (nint)(u & 0xffff)); // -(ln - 2^48), in 1 .. 2^48
        var q = (ulong)(n * inv);
        var rem = (long)n - (long)(q * wt);
        if (rem < 0)
        {
            q--;
        }
        else if (rem >= wt)
        {
            q++;
        }
        return -(long)q;
    }

    /// <summary>The map this mapper was built from.</summary>
    public CrushMap SourceMap { get; }

    internal int BucketCount => _bAlg.Length;
    internal int ItemCount => _items.Length;

    public bool HasRule(int ruleId) => _rules.ContainsKey(ruleId);

    /// <summary>
    /// Runs rule <paramref name="ruleId"/> for input <paramref name="x"/> asking for <paramref name="resultMax"/>
    /// devices. <paramref name="reweights"/> is the per-device 16.16 reweight vector (0 = out, 0x10000 = in; devices
    /// beyond its end are out). Writes the result into <paramref name="result"/> (at least resultMax long) and
    /// returns how many entries were written. Unknown rule ids give 0 entries, as in Ceph.
    /// </summary>
    public int Map(int ruleId, int x, int resultMax, ReadOnlySpan<uint> reweights, Span<int> result, CrushWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        if (!ReferenceEquals(workspace.Owner, this))
        {
            throw new ArgumentException("the workspace belongs to another mapper", nameof(workspace));
        }
        if (resultMax <= 0 || !_rules.TryGetValue(ruleId, out var steps))
        {
            return 0;
        }
        if (result.Length < resultMax)
        {
            throw new ArgumentException($"result has room for {result.Length} entries, {resultMax} were asked for", nameof(result));
        }
        workspace.Prepare(resultMax);
        var ctx = new Context(this, workspace, x, reweights);
        return ctx.DoRule(steps, resultMax, result);
    }

    private ref struct Context
    {
        private readonly CrushMapper _m;
        private readonly CrushWorkspace _ws;
        private readonly int _x;
        private readonly ReadOnlySpan<uint> _reweights;

        public Context(CrushMapper m, CrushWorkspace ws, int x, ReadOnlySpan<uint> reweights)
        {
            _m = m;
            _ws = ws;
            _x = x;
            _reweights = reweights;
        }

        public int DoRule(CrushStep[] steps, int resultMax, Span<int> result)
        {
            var m = _m;
            var w = _ws.A.AsSpan();
            var o = _ws.B.AsSpan();
            var c = _ws.C.AsSpan();
            var wsize = 0;
            var resultLen = 0;
            var chooseTries = m._chooseTotalTries + 1;
            var chooseLeafTries = 0;
            var localRetries = m._chooseLocalTries;
            var localFallbackRetries = m._chooseLocalFallbackTries;
            var varyR = m._varyR;
            var stable = m._stable;

            foreach (ref readonly var step in steps.AsSpan())
            {
                switch (step.Op)
                {
                    case RuleOp.Take:
                        {
                            var a = step.Arg1;
                            if ((a >= 0 && a < m._maxDevices) || (a < 0 && -1 - a < m._bAlg.Length && m._bAlg[-1 - a] != 0))
                            {
                                w[0] = a;
                                wsize = 1;
                            }
                            break;
                        }
                    case RuleOp.SetChooseTries:
                        if (step.Arg1 > 0)
                        {
                            chooseTries = step.Arg1;
                        }
                        break;
                    case RuleOp.SetChooseLeafTries:
                        if (step.Arg1 > 0)
                        {
                            chooseLeafTries = step.Arg1;
                        }
                        break;
                    case RuleOp.SetChooseLocalTries:
                        if (step.Arg1 >= 0)
                        {
                            localRetries = step.Arg1;
                        }
                        break;
                    case RuleOp.SetChooseLocalFallbackTries:
                        if (step.Arg1 >= 0)
                        {
                            localFallbackRetries = step.Arg1;
                        }
                        break;
                    case RuleOp.SetChooseLeafVaryR:
                        if (step.Arg1 >= 0)
                        {
                            varyR = step.Arg1;
                        }
                        break;
                    case RuleOp.SetChooseLeafStable:
                        if (step.Arg1 >= 0)
                        {
                            stable = step.Arg1;
                        }
                        break;
                    case RuleOp.ChooseFirstN or RuleOp.ChooseLeafFirstN or RuleOp.ChooseIndep or RuleOp.ChooseLeafIndep:
                        {
                            if (wsize == 0)
                            {
                                break;
                            }
                            var firstn = step.Op is RuleOp.ChooseFirstN or RuleOp.ChooseLeafFirstN;
                            var leaf = step.Op is RuleOp.ChooseLeafFirstN or RuleOp.ChooseLeafIndep;
                            var osize = 0;
                            for (var i = 0; i < wsize; i++)
                            {
                                var numrep = step.Arg1;
                                if (numrep <= 0)
                                {
                                    numrep += resultMax;
                                    if (numrep <= 0)
                                    {
                                        continue;
                                    }
                                }
                                var bno = -1 - w[i];
                                if (bno < 0 || bno >= m._bAlg.Length || m._bAlg[bno] == 0)
                                {
                                    continue;
                                }
                                if (firstn)
                                {
                                    int recurseTries = chooseLeafTries != 0 ? chooseLeafTries : m._descendOnce != 0 ? 1 : chooseTries;
                                    osize += ChooseFirstN(
                                        bno, numrep, step.Arg2, o[osize..], 0, resultMax - osize, chooseTries, recurseTries,
                                        localRetries, localFallbackRetries, leaf, varyR, stable, c[osize..], 0);
                                }
                                else
                                {
                                    var outSize = Math.Min(numrep, resultMax - osize);
                                    ChooseIndep(
                                        bno, outSize, numrep, step.Arg2, o[osize..], 0, chooseTries,
                                        chooseLeafTries != 0 ? chooseLeafTries : 1, leaf, c[osize..], hasOut2: true, 0);
                                    osize += outSize;
                                }
                            }
                            if (leaf)
                            {
                                c[..osize].CopyTo(o);
                            }
                            var tmp = o;
                            o = w;
                            w = tmp;
                            wsize = osize;
                            break;
                        }
                    case RuleOp.Emit:
                        for (var i = 0; i < wsize && resultLen < resultMax; i++)
                        {
                            result[resultLen++] = w[i];
                        }
                        wsize = 0;
                        break;
                }
            }
            return resultLen;
        }

        private readonly bool IsOut(int item)
        {
            var rw = _reweights;
            if ((uint)item >= (uint)rw.Length)
            {
                return true;
            }
            var wt = rw[item];
            if (wt >= 0x10000)
            {
                return false;
            }
            if (wt == 0)
            {
                return true;
            }
            return (CrushHash.Hash32((uint)_x, (uint)item) & 0xffff) >= wt;
        }

        private int ChooseFirstN(
            int bucket, int numrep, int type, Span<int> output, int outpos, int outSize, int tries, int recurseTries,
            int localRetries, int localFallbackRetries, bool recurseToLeaf, int varyR, int stable, Span<int> out2, int parentR)
        {
            var m = _m;
            var count = outSize;
            var item = 0;
            for (var rep = stable != 0 ? 0 : outpos; rep < numrep && count > 0; rep++)
            {
                var ftotal = 0u;
                var skipRep = false;
                bool retryDescent;
                do
                {
                    retryDescent = false;
                    var inb = bucket;
                    var flocal = 0u;
                    bool retryBucket;
                    do
                    {
                        var collide = false;
                        retryBucket = false;
                        var r = rep + parentR + (int)ftotal;
                        bool reject;
                        var size = m._bSize[inb];
                        if (size == 0)
                        {
                            reject = true;
                        }
                        else
                        {
                            if (localFallbackRetries > 0 && flocal >= (uint)(size >> 1) && flocal > (uint)localFallbackRetries)
                            {
                                item = PermChoose(inb, r);
                            }
                            else
                            {
                                item = BucketChoose(inb, r);
                            }
                            if (item >= m._maxDevices)
                            {
                                skipRep = true;
                                break;
                            }
                            int itemType;
                            if (item < 0)
                            {
                                var ib = -1 - item;
                                if (ib >= m._bAlg.Length || m._bAlg[ib] == 0)
                                {
                                    skipRep = true;
                                    break;
                                }
                                itemType = m._bType[ib];
                            }
                            else
                            {
                                itemType = 0;
                            }
                            if (itemType != type)
                            {
                                if (item >= 0)
                                {
                                    skipRep = true;
                                    break;
                                }
                                inb = -1 - item;
                                retryBucket = true;
                                continue;
                            }
                            for (var i = 0; i < outpos; i++)
                            {
                                if (output[i] == item)
                                {
                                    collide = true;
                                    break;
                                }
                            }
                            reject = false;
                            if (!collide && recurseToLeaf)
                            {
                                if (item < 0)
                                {
                                    var subR = varyR != 0 ? r >> (varyR - 1) : 0;
                                    if (ChooseFirstN(
                                        -1 - item, stable != 0 ? 1 : outpos + 1, 0, out2, outpos, count, recurseTries, 0,
                                        localRetries, localFallbackRetries, false, varyR, stable, default, subR) <= outpos)
                                    {
                                        reject = true;
                                    }
                                }
                                else
                                {
                                    out2[outpos] = item;
                                }
                            }
                            if (!reject && !collide && itemType == 0)
                            {
                                reject = IsOut(item);
                            }
                        }
                        if (reject || collide)
                        {
                            ftotal++;
                            flocal++;
                            if (collide && flocal <= (uint)localRetries)
                            {
                                retryBucket = true;
                            }
                            else if (localFallbackRetries > 0 && flocal <= (uint)(size + localFallbackRetries))
                            {
                                retryBucket = true;
                            }
                            else if (ftotal < (uint)tries)
                            {
                                retryDescent = true;
                            }
                            else
                            {
                                skipRep = true;
                            }
                        }
                    }
                    while (retryBucket);
                }
                while (retryDescent && !skipRep);

                if (skipRep)
                {
                    continue;
                }
                output[outpos] = item;
                outpos++;
                count--;
            }
            return outpos;
        }

        private void ChooseIndep(
            int bucket, int left, int numrep, int type, Span<int> output, int outpos, int tries, int recurseTries,
            bool recurseToLeaf, Span<int> out2, bool hasOut2, int parentR)
        {
            var m = _m;
            var endpos = outpos + left;
            for (var rep = outpos; rep < endpos; rep++)
            {
                output[rep] = ItemUndef;
                if (hasOut2)
                {
                    out2[rep] = ItemUndef;
                }
            }
            for (var ftotal = 0u; left > 0 && ftotal < (uint)tries; ftotal++)
            {
                for (var rep = outpos; rep < endpos; rep++)
                {
                    if (output[rep] != ItemUndef)
                    {
                        continue;
                    }
                    var inb = bucket;
                    for (; ; )
                    {
                        var r = rep + parentR;
                        var size = m._bSize[inb];
                        if (m._bAlg[inb] == (int)BucketAlg.Uniform && size % numrep == 0)
                        {
                            r += (numrep + 1) * (int)ftotal;
                        }
                        else
                        {
                            r += numrep * (int)ftotal;
                        }
                        if (size == 0)
                        {
                            break;
                        }
                        var item = BucketChoose(inb, r);
                        if (item >= m._maxDevices)
                        {
                            output[rep] = ItemNone;
                            if (hasOut2)
                            {
                                out2[rep] = ItemNone;
                            }
                            left--;
                            break;
                        }
                        int itemType;
                        var validBucket = true;
                        if (item < 0)
                        {
                            var ib = -1 - item;
                            validBucket = ib < m._bAlg.Length && m._bAlg[ib] != 0;
                            itemType = validBucket ? m._bType[ib] : -1;
                        }
                        else
                        {
                            itemType = 0;
                        }
                        if (itemType != type)
                        {
                            if (item >= 0 || !validBucket)
                            {
                                output[rep] = ItemNone;
                                if (hasOut2)
                                {
                                    out2[rep] = ItemNone;
                                }
                                left--;
                                break;
                            }
                            inb = -1 - item;
                            continue;
                        }
                        var collide = false;
                        for (var i = outpos; i < endpos; i++)
                        {
                            if (output[i] == item)
                            {
                                collide = true;
                                break;
                            }
                        }
                        if (collide)
                        {
                            break;
                        }
                        if (recurseToLeaf)
                        {
                            if (item < 0)
                            {
                                ChooseIndep(-1 - item, 1, numrep, 0, out2, rep, recurseTries, 0, false, default, hasOut2: false, r);
                                if (hasOut2 && out2[rep] == ItemNone)
                                {
                                    break;
                                }
                            }
                            else if (hasOut2)
                            {
                                out2[rep] = item;
                            }
                        }
                        if (itemType == 0 && IsOut(item))
                        {
                            break;
                        }
                        output[rep] = item;
                        left--;
                        break;
                    }
                }
            }
            for (var rep = outpos; rep < endpos; rep++)
            {
                if (output[rep] == ItemUndef)
                {
                    output[rep] = ItemNone;
                }
                if (hasOut2 && out2[rep] == ItemUndef)
                {
                    out2[rep] = ItemNone;
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly int BucketChoose(int b, int r)
        {
            var m = _m;
            switch (m._bAlg[b])
            {
                case (int)BucketAlg.Straw2:
                    return Straw2(b, r);
                case (int)BucketAlg.Uniform:
                    return PermChoose(b, r);
                case (int)BucketAlg.List:
                    return ListChoose(b, r);
                case (int)BucketAlg.Tree:
                    return TreeChoose(b, r);
                case (int)BucketAlg.Straw:
                    return StrawChoose(b, r);
                default:
                    return m._items[m._bStart[b]];
            }
        }

        // straw2: draw_i = (crush_ln(hash & 0xffff) - 2^48) / weight_i, truncated toward zero; the first largest
        // draw wins. The hashes of 8 items are computed at once with 256-bit vectors when the CPU has them. The
        // 64-bit division is a multiplication by a precomputed reciprocal, corrected to the exact quotient: n < 2^49,
        // so the double product is off by less than 1 and one step fixes it.
        private readonly int Straw2(int b, int r)
        {
            var m = _m;
            var start = m._bStart[b];
            var size = m._bSize[b];
            ref var items = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(m._items), start);
            ref var weights = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(m._weights), start);
            ref var inv = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(m._invWeights), start);
            var x = (uint)_x;
            var high = 0;
            var highDraw = long.MinValue;
            if (Vector256.IsHardwareAccelerated && size >= 8)
            {
                Span<uint> hashes = stackalloc uint[8];
                ref var padItems = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(m._padItems), m._bPadStart[b]);
                for (var chunk = 0; chunk < size; chunk += 8)
                {
                    var hv = CrushHash.Hash32x8(x, Vector256.LoadUnsafe(ref padItems, (nuint)chunk), (uint)r);
                    hv.StoreUnsafe(ref MemoryMarshal.GetReference(hashes));
                    var end = Math.Min(8, size - chunk);
                    for (var k = 0; k < end; k++)
                    {
                        var i = chunk + k;
                        var wt = Unsafe.Add(ref weights, i);
                        if (wt == 0)
                        {
                            continue; // draw = S64_MIN: never strictly greater than the current winner
                        }
                        var draw = Draw(hashes[k] & 0xffff, wt, Unsafe.Add(ref inv, i));
                        if (draw > highDraw)
                        {
                            high = i;
                            highDraw = draw;
                        }
                    }
                }
                return Unsafe.Add(ref items, high);
            }
            for (var i = 0; i < size; i++)
            {
                var wt = Unsafe.Add(ref weights, i);
                if (wt == 0)
                {
                    continue;
                }
                var u = CrushHash.Hash32(x, (uint)Unsafe.Add(ref items, i), (uint)r) & 0xffff;
                var draw = Draw(u, wt, Unsafe.Add(ref inv, i));
                if (draw > highDraw)
                {
                    high = i;
                    highDraw = draw;
                }
            }
            return Unsafe.Add(ref items, high);
        }

        private readonly int StrawChoose(int b, int r)
        {
            var m = _m;
            var start = m._bStart[b];
            var size = m._bSize[b];
            var high = 0;
            var highDraw = 0UL;
            for (var i = 0; i < size; i++)
            {
                ulong draw = CrushHash.Hash32((uint)_x, (uint)m._items[start + i], (uint)r) & 0xffff;
                draw *= m._aux[start + i];
                if (i == 0 || draw > highDraw)
                {
                    high = i;
                    highDraw = draw;
                }
            }
            return m._items[start + high];
        }

        private readonly int ListChoose(int b, int r)
        {
            var m = _m;
            var start = m._bStart[b];
            for (var i = m._bSize[b] - 1; i >= 0; i--)
            {
                ulong w = CrushHash.Hash32((uint)_x, (uint)m._items[start + i], (uint)r, (uint)m._bId[b]) & 0xffff;
                w *= m._aux[start + i];
                w >>= 16;
                if (w < m._weights[start + i])
                {
                    return m._items[start + i];
                }
            }
            return m._items[start];
        }

        private readonly int TreeChoose(int b, int r)
        {
            var m = _m;
            var nodes = m._nodes.AsSpan(m._bNodeStart[b], m._bNumNodes[b]);
            var n = m._bNumNodes[b] >> 1;
            while ((n & 1) == 0)
            {
                var w = nodes[n];
                var t = ((ulong)CrushHash.Hash32((uint)_x, (uint)n, (uint)r, (uint)m._bId[b]) * w) >> 32;
                var h = CrushBucket.TreeHeight(n);
                var l = n - (1 << (h - 1));
                n = t < nodes[l] ? l : n + (1 << (h - 1));
            }
            return m._items[m._bStart[b] + (n >> 1)];
        }

        private readonly int PermChoose(int b, int r)
        {
            var m = _m;
            var ws = _ws;
            var size = (uint)m._bSize[b];
            var start = m._bStart[b];
            var perm = ws.Perm.AsSpan(start, (int)size);
            var pr = (uint)r % size;
            var x = (uint)_x;
            var permN = ws.PermGen[b] == ws.Generation ? ws.PermN[b] : 0;
            ws.PermGen[b] = ws.Generation;
            if (ws.PermX[b] != x || permN == 0)
            {
                ws.PermX[b] = x;
                if (pr == 0)
                {
                    var s = CrushHash.Hash32(x, (uint)m._bId[b], 0) % size;
                    perm[0] = (int)s;
                    ws.PermN[b] = 0xffff;
                    return m._items[start + (int)s];
                }
                for (var i = 0; i < size; i++)
                {
                    perm[i] = i;
                }
                permN = 0;
            }
            else if (permN == 0xffff)
            {
                for (var i = 1; i < size; i++)
                {
                    perm[i] = i;
                }
                perm[perm[0]] = 0;
                permN = 1;
            }
            while ((uint)permN <= pr)
            {
                var p = (uint)permN;
                if (p < size - 1)
                {
                    var i = CrushHash.Hash32(x, (uint)m._bId[b], p) % (size - p);
                    if (i != 0)
                    {
                        (perm[(int)(p + i)], perm[(int)p]) = (perm[(int)p], perm[(int)(p + i)]);
                    }
                }
                permN++;
            }
            ws.PermN[b] = permN;
            return m._items[start + perm[(int)pr]];
        }
    }
}
