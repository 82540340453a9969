using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

/// <summary>
/// Linux native AIO (io_setup, io_submit, io_getevents, io_destroy) through syscall(2): glibc exports no wrappers.
/// With O_DIRECT, submission does not wait for the device, so many I/Os are in flight from one thread.
/// </summary>
public static unsafe class Aio
{
    /// <summary>Creates a context for up to <paramref name="maxEvents"/> in-flight I/Os.</summary>
    public static ulong io_setup(int maxEvents)
    {
        ulong ctx = 0;
        if (Libc.syscall(Constants.SYS_io_setup, maxEvents, (long)&ctx, 0, 0, 0) != 0)
        {
            throw Throw.LastError("io_setup");
        }
        return ctx;
    }

    public static void io_destroy(ulong ctx)
    {
        if (Libc.syscall(Constants.SYS_io_destroy, (long)ctx, 0, 0, 0, 0) != 0)
        {
            throw Throw.LastError("io_destroy");
        }
    }

    /// <summary>Submits one control block; EINTR is retried, EAGAIN is returned as false (the ring is full).</summary>
    public static bool io_submit(ulong ctx, IoCb* iocb, string? subject)
    {
        var list = stackalloc IoCb*[1];
        list[0] = iocb;
        return io_submit(ctx, list, 1, subject) == 1;
    }

    /// <summary>Submits up to <paramref name="count"/> control blocks with one call (the kernel plugs the block layer
    /// around them, so the device is notified once). Returns how many were submitted: from the front of the list,
    /// possibly fewer than asked, 0 when the ring is full (EAGAIN); EINTR is retried; any other error of the first
    /// block throws.</summary>
    public static int io_submit(ulong ctx, IoCb** list, int count, string? subject)
    {
        while (true)
        {
            var n = Libc.syscall(Constants.SYS_io_submit, (long)ctx, count, (long)list, 0, 0);
            if (n > 0)
            {
                return (int)n;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (n < 0 && errno == Errno.EINTR)
            {
                continue;
            }
            if (n < 0 && errno == Errno.EAGAIN)
            {
                return 0;
            }
            throw Throw.For("io_submit", n < 0 ? errno : Errno.EIO, subject);
        }
    }

    /// <summary>Waits for between <paramref name="minNr"/> and <paramref name="maxNr"/> completions, up to the timeout.
    /// Returns how many arrived (0 on timeout or EINTR).</summary>
    public static int io_getevents(ulong ctx, int minNr, int maxNr, IoEvent* events, TimeSpan timeout)
    {
        Timespec ts;
        ts.tv_sec = (long)timeout.TotalSeconds;
        ts.tv_nsec = (long)(timeout.Ticks % TimeSpan.TicksPerSecond * 100);
        var n = Libc.syscall(Constants.SYS_io_getevents, (long)ctx, minNr, maxNr, (long)events, (long)&ts);
        if (n >= 0)
        {
            return (int)n;
        }
        var errno = Marshal.GetLastPInvokeError();
        return errno == Errno.EINTR ? 0 : throw Throw.For("io_getevents", errno, null);
    }
}
