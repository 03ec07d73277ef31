from ui.pose_page import render

render()
