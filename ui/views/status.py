from ui.status_page import render

render()
