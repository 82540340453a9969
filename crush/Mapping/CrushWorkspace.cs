namespace Appliance.Crush.Mapping;

/// <summary>
/// Per-thread scratch space for <see cref="CrushMapper"/>: the rule interpreter's three working vectors and the
/// permutation state of every bucket. Reuse one per thread; it grows once to the largest replica count asked for
/// and never allocates after that. Not thread-safe: one workspace must not be used by two threads at once.
/// </summary>
public sealed class CrushWorkspace
{
    internal int[] A = new int[16];
    internal int[] B = new int[16];
    internal int[] C = new int[16];

    // Permutation state per bucket index (-1 - id), used by uniform buckets and by the local fallback search.
    internal readonly uint[] PermX;
    internal readonly int[] PermN;
    internal readonly int[] Perm;
    // A bucket's permutation state is valid only while PermGen[b] == Generation; a new mapping bumps Generation,
    // which resets every bucket's state at once.
    internal readonly uint[] PermGen;
    internal uint Generation = 1;
    internal readonly CrushMapper Owner;

    public CrushWorkspace(CrushMapper mapper)
    {
        ArgumentNullException.ThrowIfNull(mapper);
        Owner = mapper;
        PermX = new uint[mapper.BucketCount];
        PermN = new int[mapper.BucketCount];
        PermGen = new uint[mapper.BucketCount];
        Perm = new int[Math.Max(1, mapper.ItemCount)];
    }

    internal void Prepare(int resultMax)
    {
        if (A.Length < resultMax)
        {
            // Grows once to the largest replica count; later calls reuse the arrays.
            var n = Math.Max(resultMax, A.Length * 2);
            A = new int[n];
            B = new int[n];
            C = new int[n];
        }
        // The permutation state lives for one mapping (Ceph initialises the work area per call).
        Generation++;
        if (Generation == 0)
        {
            Array.Clear(PermGen);
            Generation = 1;
        }
    }
}
