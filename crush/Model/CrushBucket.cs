namespace Appliance.Crush.Model;

/// <summary>
/// A bucket of a compiled map: its items in order with their 16.16 weights as stored in this bucket, plus the
/// per-algorithm data the mapper needs (list sums, tree node weights, straw lengths), computed as Ceph's builder does.
/// </summary>
public sealed class CrushBucket
{
    internal CrushBucket(int id, string name, int typeId, BucketAlg alg, int hash, int[] items, uint[] weights, int strawCalcVersion)
    {
        Id = id;
        Name = name;
        TypeId = typeId;
        Alg = alg;
        Hash = hash;
        ItemsArray = items;
        ItemWeights = weights;
        uint total = 0;
        foreach (var w in weights)
        {
            total += w;
        }
        Weight = total;
        switch (alg)
        {
            case BucketAlg.List:
                SumWeights = new uint[items.Length];
                uint sum = 0;
                for (var i = 0; i < items.Length; i++)
                {
                    sum += weights[i];
                    SumWeights[i] = sum;
                }
                break;
            case BucketAlg.Tree:
                (NodeWeights, NumNodes) = BuildTree(weights);
                break;
            case BucketAlg.Straw:
                Straws = CalcStraws(weights, strawCalcVersion);
                break;
        }
    }

    public int Id { get; }
    public string Name { get; }
    public int TypeId { get; }
    public BucketAlg Alg { get; }
    public int Hash { get; }
    public IReadOnlyList<int> Items => _itemsView ??= Array.AsReadOnly(ItemsArray);
    public IReadOnlyList<uint> Weights => _weightsView ??= Array.AsReadOnly(ItemWeights);
    /// <summary>The bucket's total weight: the 32-bit sum of its item weights.</summary>
    public uint Weight { get; }
    /// <summary>True for a device-class shadow bucket (name `B~class`).</summary>
    public bool IsShadow { get; internal init; }
    /// <summary>For a shadow bucket: the class id; otherwise -1.</summary>
    public int ClassId { get; internal init; } = -1;
    /// <summary>For a shadow bucket: the id of the bucket it was cloned from; otherwise 0.</summary>
    public int ShadowOf { get; internal init; }

    internal int[] ItemsArray { get; }
    internal uint[] ItemWeights { get; }
    internal uint[]? SumWeights { get; }
    internal uint[]? NodeWeights { get; }
    internal int NumNodes { get; }
    internal uint[]? Straws { get; }

    private IReadOnlyList<int>? _itemsView;
    private IReadOnlyList<uint>? _weightsView;

    // Tree buckets: items sit at the odd node numbers 2i+1; inner node weights are the sums below them.
    private static (uint[] Nodes, int NumNodes) BuildTree(uint[] weights)
    {
        var size = weights.Length;
        var depth = 1;
        for (var t = size - 1; t > 0; t >>= 1)
        {
            depth++;
        }
        if (size == 0)
        {
            depth = 1;
        }
        var numNodes = 1 << depth;
        var nodes = new uint[numNodes];
        for (var i = 0; i < size; i++)
        {
            var node = ((i + 1) << 1) - 1;
            nodes[node] = weights[i];
            for (var j = 1; j < depth; j++)
            {
                node = TreeParent(node);
                nodes[node] += weights[i];
            }
        }
        return (nodes, numNodes);
    }

    internal static int TreeHeight(int n)
    {
        var h = 0;
        while ((n & 1) == 0)
        {
            h++;
            n >>= 1;
        }
        return h;
    }

    private static int TreeParent(int n)
    {
        var h = TreeHeight(n);
        return (n & (1 << (h + 1))) != 0 ? n - (1 << h) : n + (1 << h);
    }

    // Straw (v1) lengths, computed in double precision exactly as Ceph's builder does for the given
    // straw_calc_version (0 is the original, subtly wrong computation; 1 fixes it). The order of floating-point
    // operations matters and is kept.
    private static uint[] CalcStraws(uint[] weights, int version)
    {
        var size = weights.Length;
        var straws = new uint[size];
        var reverse = new int[size];
        if (size > 0)
        {
            reverse[0] = 0;
        }
        for (var i = 1; i < size; i++)
        {
            int j;
            for (j = 0; j < i; j++)
            {
                if (weights[i] < weights[reverse[j]])
                {
                    for (var k = i; k > j; k--)
                    {
                        reverse[k] = reverse[k - 1];
                    }
                    reverse[j] = i;
                    break;
                }
            }
            if (j == i)
            {
                reverse[i] = i;
            }
        }
        var numLeft = size;
        var straw = 1.0;
        var wbelow = 0.0;
        var lastw = 0.0;
        var ii = 0;
        while (ii < size)
        {
            if (version == 0)
            {
                if (weights[reverse[ii]] == 0)
                {
                    straws[reverse[ii]] = 0;
                    ii++;
                    continue;
                }
                straws[reverse[ii]] = DoubleToU32(straw * 0x10000);
                ii++;
                if (ii == size)
                {
                    break;
                }
                if (weights[reverse[ii]] == weights[reverse[ii - 1]])
                {
                    continue;
                }
                wbelow += ((double)weights[reverse[ii - 1]] - lastw) * numLeft;
                for (var j = ii; j < size; j++)
                {
                    if (weights[reverse[j]] == weights[reverse[ii]])
                    {
                        numLeft--;
                    }
                    else
                    {
                        break;
                    }
                }
                // C: int * (u32 - u32) is unsigned 32-bit arithmetic, then converted to double.
                double wnext = unchecked((uint)numLeft * (weights[reverse[ii]] - weights[reverse[ii - 1]]));
                var pbelow = wbelow / (wbelow + wnext);
                straw *= Math.Pow(1.0 / pbelow, 1.0 / numLeft);
                lastw = weights[reverse[ii - 1]];
            }
            else
            {
                if (weights[reverse[ii]] == 0)
                {
                    straws[reverse[ii]] = 0;
                    ii++;
                    numLeft--;
                    continue;
                }
                straws[reverse[ii]] = DoubleToU32(straw * 0x10000);
                ii++;
                if (ii == size)
                {
                    break;
                }
                wbelow += ((double)weights[reverse[ii - 1]] - lastw) * numLeft;
                numLeft--;
                double wnext = unchecked((uint)numLeft * (weights[reverse[ii]] - weights[reverse[ii - 1]]));
                var pbelow = wbelow / (wbelow + wnext);
                straw *= Math.Pow(1.0 / pbelow, 1.0 / numLeft);
                lastw = weights[reverse[ii - 1]];
            }
        }
        return straws;
    }

    private static uint DoubleToU32(double v) => v >= 4294967296.0 || double.IsNaN(v) ? 0 : v <= 0 ? 0 : (uint)v;
}
