using System.Collections.Concurrent;
using Appliance.Fs.Protocol;

namespace Appliance.Fs.Session;

/// <summary>
/// Pinned request buffers, each big enough for the largest request (a 1 MiB write and its headers). A request
/// owns its buffer until its backend call finishes, even after a deadline reply: the backend may still be writing
/// into it. Pinned so the kernel read/write never copies through a pinning handle.
/// </summary>
internal sealed class BufferPool(int keep)
{
    private readonly ConcurrentBag<byte[]> _free = [];

    public byte[] Rent() => _free.TryTake(out var buffer) ? buffer : GC.AllocateUninitializedArray<byte>(FuseConstants.BufferSize, pinned: true);

    public void Return(byte[] buffer)
    {
        // Racy count check: at worst a few more than `keep` stay; never unbounded, since each caller returns one.
        if (_free.Count < keep)
        {
            _free.Add(buffer);
        }
    }
}
