"""What the slixmpp interop scripts share (imported from the scripts' own folder)."""
import asyncio


async def wait_for(pred, seconds=10):
    """Poll pred every 50 ms; True once it holds, False after `seconds`."""
    for _ in range(int(seconds * 20)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    return False
